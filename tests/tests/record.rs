//! `memtools-user record` with the /proc backend, end to end: real recorder, real simulator.
//! Every recording here asks for `--backend procfs`; tests/tests/ebpf.rs covers the eBPF one.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestStore, is_root, kill_pid_file, leak_sim, skip};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const MIB: i64 = 1024 * 1024;

/// (name, samples, first, last) of rss_anon per process of the latest session.
fn anon_growth(store: &TestStore) -> Vec<(String, i64, i64, i64)> {
    let sql = store.sql();
    let mut stmt = sql
        .prepare(
            "SELECT p.name, COUNT(*),
                (SELECT rss_anon FROM samples WHERE process_id = p.id ORDER BY t_ns LIMIT 1),
                (SELECT rss_anon FROM samples WHERE process_id = p.id ORDER BY t_ns DESC LIMIT 1)
             FROM processes p JOIN samples s ON s.process_id = p.id
             WHERE p.session_id = (SELECT MAX(id) FROM sessions) GROUP BY p.id ORDER BY p.id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_child_allocating_2mib_every_100ms_shows_its_growth_in_show() {
    let store = TestStore::new();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "50ms",
        "--",
        leak_sim(),
        "linear",
        "--step",
        "2MiB",
        "--every",
        "100ms",
        "--duration",
        "2s",
        "--hold",
        "200ms",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("session 1 (procfs): 1 process,"),
        "{summary}"
    );
    assert!(summary.contains("leak-sim"), "{summary}");

    let rows = anon_growth(&store);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (name, samples, first, last) = &rows[0];
    assert_eq!(name, "leak-sim");
    // ~2.2 s at 50 ms; a loaded machine may miss some ticks.
    assert!(*samples >= 20, "only {samples} samples");
    // 20 steps of 2 MiB; on a loaded machine (the tests run in parallel on 2 cores) the
    // simulator may get through a few steps fewer before its duration is over.
    let growth = last - first;
    assert!(
        (10 * MIB..=42 * MIB).contains(&growth),
        "grew {growth} bytes"
    );

    let show = store.ok(&["show"]);
    let line = show
        .lines()
        .find(|l| l.starts_with('│') && l.contains("leak-sim"))
        .unwrap_or_else(|| panic!("no leak-sim row in:\n{show}"));
    let shown: f64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix('+').and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no growth in `{line}`"));
    assert!(line.contains("MiB"), "{line}");
    // Resident memory: the 40 MiB of heap plus the binary's own pages, mapped as it started.
    assert!(
        (10.0..=46.0).contains(&shown),
        "show says +{shown} MiB: {line}"
    );
    assert!(show.contains("memory is rss"), "{show}");
}

#[test]
fn the_command_exit_status_is_the_recorders() {
    let store = TestStore::new();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--",
        leak_sim(),
        "flat",
        "--base",
        "1MiB",
        "--duration",
        "300ms",
        "--exit-code",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    let s = &store.sessions()[0];
    assert_eq!(s["exit_status"], 5);
    assert!(s["end"].is_string(), "{s}");

    let missing = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--",
        "/nonexistent/program",
    ]);
    assert_eq!(missing.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot run `/nonexistent/program`"));
}

#[test]
fn a_process_tree_is_followed_with_its_parent_links() {
    let store = TestStore::new();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "20ms",
        "--",
        leak_sim(),
        "tree",
        "--children",
        "2",
        "--depth",
        "2",
        "--child-shape",
        "linear",
        "--step",
        "1MiB",
        "--duration",
        "1s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql = store.sql();
    let mut stmt = sql
        .prepare("SELECT pid, ppid, exit_ns IS NOT NULL FROM processes ORDER BY id")
        .unwrap();
    let procs: Vec<(u32, u32, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // 1 root, 2 middle, 4 leaves; every one but the root has its parent in the session.
    assert_eq!(procs.len(), 7, "{procs:?}");
    let root = procs[0].0;
    for &(pid, ppid, exited) in &procs {
        assert!(exited, "pid {pid} has no exit recorded");
        if pid != root {
            assert!(
                procs.iter().any(|p| p.0 == ppid),
                "parent {ppid} of {pid} not followed"
            );
        }
    }
}

#[test]
fn running_processes_are_recorded_by_pid_until_they_exit() {
    let store = TestStore::new();
    let mut sim = std::process::Command::new(leak_sim())
        .args(["linear", "--step", "1MiB", "--duration", "1500ms"])
        .spawn()
        .unwrap();
    let pid = sim.id().to_string();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "50ms",
        "--pid",
        &pid,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sim.wait().unwrap();
    let rows = anon_growth(&store);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1 >= 10, "{rows:?}");
    assert_eq!(store.sessions()[0]["command"], format!("--pid {pid}"));

    let gone = store.run(&["record", "--backend", "procfs", "--pid", "999999999"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no process with pid 999999999"));
}

#[test]
fn duration_stops_the_recording_and_the_command() {
    let store = TestStore::new();
    let started = Instant::now();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--duration",
        "1s",
        "--",
        leak_sim(),
        "flat",
        "--duration",
        "30s",
    ]);
    // The command was sent SIGTERM, like `timeout` does.
    assert_eq!(out.status.code(), Some(128 + 15));
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = &store.sessions()[0];
    assert_eq!(s["exit_signal"], 15);
    assert!(s["end"].is_string());
}

/// A recording with a long interval still ends when its duration does: the loop wakes at
/// the duration's end rather than at the next tick (10 minutes here), for a command, for one
/// that ignores SIGTERM (killed once the stop's grace is over, not at a tick), and for --pid.
#[test]
fn a_long_interval_does_not_hold_up_the_end_of_the_duration() {
    let store = TestStore::new();
    let long = [
        "record",
        "--backend",
        "procfs",
        "--interval",
        "10m",
        "--duration",
        "1s",
    ];
    let started = Instant::now();
    let mut args = long.to_vec();
    args.extend(["--", leak_sim(), "flat", "--duration", "60s"]);
    let out = store.run(&args);
    assert_eq!(out.status.code(), Some(128 + 15));
    assert!(started.elapsed() < Duration::from_secs(30));

    let started = Instant::now();
    let mut args = long.to_vec();
    args.extend(["--", "sh", "-c", "trap '' TERM; sleep 60; :"]);
    let out = store.run(&args);
    assert_eq!(out.status.code(), Some(128 + 9), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let started = Instant::now();
    let mut args = long.to_vec();
    args.extend(["--pid", &pid]);
    let out = store.run(&args);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(out.status.success(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    for s in store.sessions() {
        assert!(s["end"].is_string(), "session not finished: {s}");
    }
}

#[test]
fn sigterm_or_sigint_to_the_recorder_stops_the_command_and_finishes_the_session() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let store = TestStore::new();
        let ready = store.dir.path().join("ready");
        let mut rec = store
            .cmd(&[
                "record",
                "--backend",
                "procfs",
                "--",
                leak_sim(),
                "flat",
                "--duration",
                "30s",
                "--ready-file",
            ])
            .arg(&ready)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        kill(Pid::from_raw(rec.id() as i32), signal).unwrap();
        let status = rec.wait().unwrap();
        // The signal was passed on to the command, which died of it: its status is ours.
        assert_eq!(status.code(), Some(128 + signal as i32), "{signal}");
        let s = &store.sessions()[0];
        assert!(s["end"].is_string(), "{signal}: session not finished: {s}");
        assert_eq!(s["exit_signal"], signal as i32);
        assert!(s["samples"].as_u64().unwrap() > 0);
    }
}

#[test]
fn all_records_every_user_process_until_the_duration_is_over() {
    let store = TestStore::new();
    let started = Instant::now();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--all",
        "--interval",
        "100ms",
        "--duration",
        "1s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = &store.sessions()[0];
    assert_eq!(s["command"], "--all");
    assert!(s["end"].is_string());
    // This test process was running all along, so it is in there, with samples.
    let me = std::process::id();
    let samples: i64 = store
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM samples JOIN processes p ON p.id = samples.process_id WHERE p.pid = ?1",
            [me],
            |r| r.get(0),
        )
        .unwrap();
    assert!(samples >= 5, "{samples} samples of this process");
    assert!(s["processes"].as_u64().unwrap() >= 3, "{s}");
    // Kernel threads have no memory of their own and are left out.
    let kthreads: i64 = store
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM processes WHERE name LIKE 'kworker%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kthreads, 0);
}

#[test]
fn a_recorder_killed_with_sigkill_leaves_a_readable_store_with_all_but_the_last_second() {
    let store = TestStore::new();
    let pid_file = store.dir.path().join("sim.pid");
    let mut rec = store
        .cmd(&[
            "record",
            "--backend",
            "procfs",
            "--interval",
            "20ms",
            "--",
            leak_sim(),
            "linear",
            "--step",
            "256KiB",
            "--every",
            "20ms",
            "--duration",
            "20s",
            "--pid-file",
        ])
        .arg(&pid_file)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    kill(Pid::from_raw(rec.id() as i32), Signal::SIGKILL).unwrap();
    rec.wait().unwrap();
    kill_pid_file(&pid_file);

    let sql = store.sql();
    let integrity: String = sql
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let (end, last, count, first): (Option<i64>, i64, i64, i64) = sql
        .query_row(
            "SELECT s.end_ns, MAX(x.t_ns), COUNT(*), MIN(x.t_ns) FROM sessions s JOIN processes p ON p.session_id = s.id JOIN samples x ON x.process_id = p.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(end, None, "a killed recording cannot have finished");
    assert!(
        last >= killed_at - 1_000_000_000,
        "the last sample is {} ms before the kill",
        (killed_at - last) / 1_000_000
    );
    assert!(count >= 50, "{count} samples in 3 s at 20 ms");
    assert!(last - first >= 2_000_000_000);
    // The commands still read it and call it unfinished.
    let sessions = store.ok(&["sessions"]);
    assert!(sessions.contains("(unfinished)"), "{sessions}");
    let show = store.ok(&["show"]);
    assert!(show.contains("leak-sim"), "{show}");
}

#[test]
fn a_second_reader_reads_while_a_recording_runs() {
    let store = TestStore::new();
    let mut rec = store
        .cmd(&[
            "record",
            "--backend",
            "procfs",
            "--interval",
            "20ms",
            "--",
            leak_sim(),
            "linear",
            "--step",
            "512KiB",
            "--duration",
            "3s",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let during = store.sessions();
    let s = &during[0];
    assert!(s["end"].is_null(), "still recording: {s}");
    let mid = s["samples"].as_u64().unwrap();
    assert!(mid > 0, "no samples visible mid-recording: {s}");
    assert!(store.ok(&["show"]).contains("leak-sim"));
    assert!(rec.wait().unwrap().success());
    let after = store.sessions()[0]["samples"].as_u64().unwrap();
    assert!(after > mid);
}

#[test]
fn a_reused_pid_becomes_a_new_process() {
    if !is_root() {
        skip(
            "a_reused_pid_becomes_a_new_process",
            "forcing a pid to be reused needs root (ns_last_pid)",
        );
        return;
    }
    let store = TestStore::new();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "20ms",
        "--",
        leak_sim(),
        "reuse",
        "--base",
        "4MiB",
        "--child-life",
        "400ms",
        "--duration",
        "20s",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = stdout
        .trim()
        .strip_prefix("reuse pid=")
        .and_then(|s| s.strip_suffix(" ok"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected simulator output `{stdout}`"));
    let sql = store.sql();
    let mut stmt = sql
        .prepare("SELECT start_time, exit_ns IS NOT NULL, (SELECT COUNT(*) FROM samples WHERE process_id = processes.id) FROM processes WHERE pid = ?1 ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, bool, i64)> = stmt
        .query_map([pid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let reused: Vec<_> = rows.iter().filter(|r| r.2 > 0).collect();
    assert!(
        reused.len() >= 2,
        "pid {pid} should be two processes: {rows:?}"
    );
    assert!(
        reused[0].0 < reused[1].0,
        "start times must differ: {rows:?}"
    );
    assert!(
        reused[0].1,
        "the first holder's exit must be recorded: {rows:?}"
    );
}

#[test]
fn bad_arguments_are_refused_with_what_to_do() {
    let store = TestStore::new();
    let short = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "5ms",
        "--all",
    ]);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 10ms"));
    let nothing = store.run(&["record"]);
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("say what to record"));
    let bad = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "soon",
        "--all",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`soon` is not a duration"));
    // Nothing was recorded by any of them.
    assert!(!store.path().exists() || store.sessions().is_empty());
}

#[test]
fn the_address_space_limit_is_recorded_and_bounds_virtual_size() {
    let store = TestStore::new();
    // 4 GiB of address space (ulimit -v counts KiB), inherited by the simulator.
    let script = format!(
        "ulimit -v 4194304 && exec {} flat --base 8MiB --duration 1s",
        leak_sim()
    );
    store.ok(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "50ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let limit: Option<i64> = store
        .sql()
        .query_row(
            "SELECT address_space_limit FROM processes WHERE name = 'leak-sim'",
            [],
            |r| r.get(0),
        )
        .expect("the simulator was recorded");
    assert_eq!(limit, Some(4 << 30));
    // Virtual size is projected against it; resident memory against the machine's memory.
    let out = store.ok(&["detect", "--metric", "vm_size", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let p = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "leak-sim")
        .expect("leak-sim");
    assert_eq!(p["limit_source"], "address_space", "{p}");
    assert_eq!(p["limit_bytes"], 4u64 << 30);
    let out = store.ok(&["detect", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let p = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "leak-sim")
        .expect("leak-sim");
    assert_eq!(p["limit_source"], "recording_machine", "{p}");
}

/// An exec that keeps the process's name (a shell running a shell, `python3` starting
/// `python3 -c ...`) still gives it its new command line: the one stored is what it ran last,
/// not what its parent was running when it was first seen.
#[test]
fn an_exec_under_the_same_name_updates_the_command_line() {
    let store = TestStore::new();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "20ms",
        "--",
        "sh",
        "-c",
        // Two shells in the same state can show the same statm: a process in its first second
        // is read whole at every tick all the same, so the exec is seen though the second
        // shell lives only half a second.
        "sleep 0.5; exec sh -c 'sleep 0.5' second-$((1 + 1))",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql = store.sql();
    let (name, cmdline): (String, String) = sql
        .query_row(
            "SELECT name, cmdline FROM processes ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(name, "sh");
    assert!(cmdline.contains("second-2"), "{cmdline}");
}
