//! Fault suite, the store: a full file system under it, and readers who may not write it
//! (another user, a read-only mount). What was stored stays readable, the command is never
//! abandoned, and nothing is changed by reading.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Mount, TestStore, as_nobody, dir_snapshot, is_root, leak_sim, read_pids, sessions_json, skip,
    wait_gone,
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
}

#[test]
fn a_store_removed_while_recording_stops_the_recording_not_the_command() {
    let store = TestStore::new();
    let pid_file = store.dir.path().join("pid");
    let script = format!("echo $$ > '{}'; sleep 2.5; exit 4", pid_file.display());
    let rec = store
        .cmd(&[
            "record",
            "--backend",
            "procfs",
            "--interval",
            "20ms",
            "--",
            "sh",
            "-c",
        ])
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_pids(&pid_file).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(store.path()).unwrap();
    let out = rec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "the command's status: {stderr}");
    assert_eq!(stderr.matches("recording stopped").count(), 1, "{stderr}");
    assert!(stderr.contains("was removed or replaced"), "{stderr}");
    assert!(wait_gone(&read_pids(&pid_file), Duration::from_secs(2)).is_empty());
}
