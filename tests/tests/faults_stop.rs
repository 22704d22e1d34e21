//! Fault suite, stopping: however a recording is stopped (SIGTERM or SIGINT to the recorder,
//! `--duration`, the command exiting on its own), no process of the recorded tree outlives the
//! recorder, even one that ignores SIGTERM, lives in a subshell or daemonised itself; with
//! cgroup v2 (root) and without it. And a refused backend starts nothing.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{TestStore, as_nobody, is_root, read_pids, skip, wait_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A tree that resists: the shell and a subshell ignore SIGTERM, SIGINT and SIGHUP, and a
/// daemon (setsid, its parent gone) does too. Each writes its pid to `pids`.
const STUBBORN: &str = r#"
trap '' TERM INT HUP
echo $$ >> pids
( trap '' TERM INT HUP; sh -c 'echo $$ >> pids; exec sleep 300' ) &
setsid sh -c 'trap "" TERM INT HUP; sh -c "echo \$\$ >> pids; exec sleep 300" &' &
sleep 300
"#;

/// How the recording is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Term,
    Int,
    Duration,
}

fn start(store: &TestStore, stop: Stop, cgroup: bool) -> Child {
    let mut args = vec!["record", "--backend", "procfs", "--interval", "50ms"];
    if let Stop::Duration = stop {
        args.extend(["--duration", "2s"]);
    }
    args.extend(["--", "sh", "-c", STUBBORN]);
    let mut cmd = store.cmd(&args);
    if !cgroup {
        cmd.env("MEMTOOLS_NO_CGROUP", "1");
    }
    cmd.current_dir(store.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the recorder")
}

fn wait_for_pids(path: &Path, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids = read_pids(path);
        if pids.len() >= n || Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cgroup a session's tree was held in, from its `tree` text.
fn cgroup_of(session: &serde_json::Value) -> Option<String> {
    let tree = session["tree"].as_str()?;
    let rest = tree.strip_prefix("cgroup ")?;
    rest.split(" (").next().map(str::to_string)
}

fn stop_and_check(stop: Stop, cgroup: bool) {
    let store = TestStore::new();
    let rec = start(&store, stop, cgroup);
    let pids_file = store.dir.path().join("pids");
    let pids = wait_for_pids(&pids_file, 3);
    assert_eq!(pids.len(), 3, "{stop:?}: the tree did not start: {pids:?}");
    let recorder = Pid::from_raw(rec.id() as i32);
    match stop {
        Stop::Term => kill(recorder, Signal::SIGTERM).unwrap(),
        Stop::Int => kill(recorder, Signal::SIGINT).unwrap(),
        Stop::Duration => {}
    }
    let out = rec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let left = wait_gone(&pids, Duration::from_secs(2));
    for &p in &left {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
    assert!(
        left.is_empty(),
        "{stop:?} (cgroup: {cgroup}): {left:?} outlived the recorder\n{stderr}"
    );
    // The shell ignored SIGTERM: SIGKILL ended it, and that is the recorder's status.
    assert_eq!(out.status.code(), Some(128 + 9), "{stop:?}: {stderr}");
    let session = store.sessions().remove(0);
    assert_eq!(session["state"], "finished", "{session}");
    assert_eq!(session["processes"].as_u64().map(|n| n >= 3), Some(true));
    let tree = session["tree"].as_str().unwrap_or_default();
    if cgroup {
        let dir = cgroup_of(&session).unwrap_or_else(|| panic!("no cgroup: {tree}"));
        assert!(!Path::new(&dir).exists(), "{dir} was left behind");
    } else {
        assert!(tree.contains("subreaper"), "{tree}");
    }
}

fn every_stop(cgroup: bool) {
    std::thread::scope(|s| {
        for stop in [Stop::Term, Stop::Int, Stop::Duration] {
            s.spawn(move || stop_and_check(stop, cgroup));
        }
    });
}

#[test]
fn every_stop_ends_the_whole_tree_with_the_recorder_as_subreaper() {
    every_stop(false);
}

#[test]
fn every_stop_ends_the_whole_tree_in_its_cgroup() {
    if !is_root() {
        skip(
            "every_stop_ends_the_whole_tree_in_its_cgroup",
            "needs root (to make a cgroup)",
        );
        return;
    }
    every_stop(true);
}

#[test]
fn what_the_command_leaves_running_is_stopped_and_its_status_kept() {
    for cgroup in [false, true] {
        if cgroup && !is_root() {
            skip(
                "what_the_command_leaves_running_is_stopped_and_its_status_kept (cgroup)",
                "needs root",
            );
            continue;
        }
        let store = TestStore::new();
        let script =
            r#"setsid sh -c 'trap "" TERM; echo $$ > daemon; exec sleep 300' & sleep 0.5; exit 5"#;
        let mut cmd = store.cmd(&["record", "--backend", "procfs", "--", "sh", "-c", script]);
        if !cgroup {
            cmd.env("MEMTOOLS_NO_CGROUP", "1");
        }
        let out = cmd.current_dir(store.dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let daemon = read_pids(&store.dir.path().join("daemon"));
        assert_eq!(daemon.len(), 1, "{stderr}");
        let left = wait_gone(&daemon, Duration::from_secs(2));
        for &p in &left {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
        assert!(
            left.is_empty(),
            "the daemon outlived the recorder: {stderr}"
        );
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        assert!(stderr.contains("still running: sent SIGTERM"), "{stderr}");
    }
}

#[test]
fn a_refused_ebpf_backend_starts_nothing() {
    if !is_root() {
        skip(
            "a_refused_ebpf_backend_starts_nothing",
            "needs root (to become nobody)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let started = dir.path().join("started");
    let mut cmd = std::process::Command::new(common::memtools_user());
    cmd.args(["record", "--backend", "ebpf", "--", "touch"])
        .arg(&started)
        .env("MEMTOOLS_STORE", dir.path().join("memtools.db"))
        .current_dir(dir.path());
    let out = as_nobody(&mut cmd).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot record with eBPF"), "{stderr}");
    assert!(
        !started.exists(),
        "the command ran before the refusal: {stderr}"
    );
}
