//! `memtools-user record --backend ebpf` end to end: the real kernel programs, the real
//! recorder, the real simulator. These need root (loading tracing programs); CI runs as root.
//!
//! They run one at a time (`serial`): several load programs at once would measure each
//! other.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{TestStore, is_root, kill_pid_file, leak_sim, skip};

const MIB: i64 = 1024 * 1024;
const PAGE: i64 = 4096;

/// One test at a time; a failed test must not poison the others.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the test can load eBPF programs; says so loudly when it cannot (not root, or a
/// build without the eBPF object because the pinned nightly could not be installed).
fn can_load(test: &str) -> bool {
    if !is_root() {
        skip(test, "loading eBPF programs needs root");
        return false;
    }
    static BUILT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let built = *BUILT.get_or_init(|| {
        let store = TestStore::new();
        let out = store.run(&["record", "--backend", "ebpf", "--", "/bin/true"]);
        !String::from_utf8_lossy(&out.stderr).contains("eBPF object was not built")
    });
    if !built {
        skip(
            test,
            "memtools-user was built without its eBPF object (run `cargo xtask setup`)",
        );
    }
    built
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Records `leak-sim ARGS` with the eBPF backend; panics with stderr when it fails.
fn record(store: &TestStore, interval: &str, sim: &[&str]) -> String {
    record_with(store, &[], interval, sim)
}

/// Records `leak-sim ARGS` with the eBPF backend and more record options.
fn record_with(store: &TestStore, options: &[&str], interval: &str, sim: &[&str]) -> String {
    let mut args = vec!["record", "--backend", "ebpf", "--interval", interval];
    args.extend_from_slice(options);
    args.push("--");
    args.push(leak_sim());
    args.extend_from_slice(sim);
    let out = store.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "record {sim:?} failed: {stderr}");
    assert!(
        stderr.contains("(ebpf)"),
        "not recorded with eBPF: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The memory lines of /proc/PID/status that the backend reports, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Status {
    anon: i64,
    file: i64,
    shmem: i64,
    swap: i64,
    vm_size: i64,
    /// minflt + majflt of /proc/PID/stat.
    faults: i64,
}

fn read_status(pid: i32) -> Option<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<i64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v * 1024)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 10 and 12 of stat (minflt, majflt) are 7 and 9 after the name.
    let faults = fields.get(7)?.parse::<i64>().ok()? + fields.get(9)?.parse::<i64>().ok()?;
    Some(Status {
        faults,
        anon: kb("RssAnon:")?,
        file: kb("RssFile:")?,
        shmem: kb("RssShmem:")?,
        swap: kb("VmSwap:")?,
        vm_size: kb("VmSize:")?,
    })
}

/// The recorded samples of one pid: time -> figures.
fn samples_of(store: &TestStore, pid: i32) -> BTreeMap<i64, Status> {
    let sql = store.sql();
    let mut stmt = sql
        .prepare(
            "SELECT t_ns, rss_anon, rss_file, rss_shmem, swap, vm_size, page_faults FROM samples
             JOIN processes p ON p.id = samples.process_id WHERE p.pid = ?1 ORDER BY t_ns",
        )
        .unwrap();
    stmt.query_map([pid], |r| {
        Ok((
            r.get(0)?,
            Status {
                anon: r.get(1)?,
                file: r.get(2)?,
                shmem: r.get(3)?,
                swap: r.get(4)?,
                vm_size: r.get(5)?,
                faults: r.get(6)?,
            },
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Steps of one kind of memory: while the simulator runs, /proc/PID/status is read every few
/// milliseconds; every recorded sample that falls between two equal readings (memory did not
/// move around it) must agree with them within one page on every figure.
fn agrees_with_proc_status(kind: &str) {
    agrees_with_proc_status_using(kind, &[]);
}

/// As [`agrees_with_proc_status`], recording with more options.
fn agrees_with_proc_status_using(kind: &str, options: &[&str]) {
    let store = TestStore::new();
    let pid_file = store.dir.path().join("sim.pid");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    let mut args = vec!["record", "--backend", "ebpf", "--interval", "20ms"];
    args.extend_from_slice(options);
    args.push("--");
    let sim = [
        "steps",
        "--kind",
        kind,
        "--step",
        "1MiB",
        "--every",
        "50ms",
        "--hold-ticks",
        "6",
        "--duration",
        "3s",
        "--pid-file",
        &pid_arg,
    ];
    args.push(leak_sim());
    args.extend_from_slice(&sim);
    let rec = store
        .cmd(&args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no pid file");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut readings: Vec<(i64, Status)> = Vec::new();
    while let Some(s) = read_status(pid) {
        readings.push((now_ns(), s));
        std::thread::sleep(Duration::from_millis(3));
    }
    let out = rec.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill_pid_file(&pid_file);
    let samples = samples_of(&store, pid);
    let check = |s: &Status, want: &Status| {
        for (what, got, want) in [
            ("RssAnon", s.anon, want.anon),
            ("RssFile", s.file, want.file),
            ("RssShmem", s.shmem, want.shmem),
            ("VmSwap", s.swap, want.swap),
            ("VmSize", s.vm_size, want.vm_size),
        ] {
            assert!(
                (got - want).abs() <= PAGE,
                "--kind {kind}: {what} recorded {got}, /proc/{pid}/status says {want}"
            );
        }
        // Faults the kernel takes on user memory while in a system call (a read into a fresh
        // buffer) are in /proc's count but are not user-mode faults: allow a few.
        assert!(
            (s.faults - want.faults).abs() <= 16,
            "--kind {kind}: page faults recorded {}, /proc/{pid}/stat says {}",
            s.faults,
            want.faults
        );
    };
    // Each stair: a run of equal readings. The eBPF backend writes a process when it changes
    // (and every 10 s), so what is on record at the end of a stair is the last sample
    // before it, and it must be the stair's figures.
    let mut stairs = 0;
    let mut start = 0;
    for i in 1..=readings.len() {
        if i < readings.len() && readings[i].1 == readings[start].1 {
            continue;
        }
        let (t_start, want) = readings[start];
        let t_end = readings[i - 1].0;
        start = i;
        if t_end - t_start < 100_000_000 {
            continue;
        }
        let (_, on_record) = samples
            .range(..=t_end)
            .next_back()
            .unwrap_or_else(|| panic!("--kind {kind}: no sample before {t_end}"));
        check(on_record, &want);
        stairs += 1;
    }
    assert!(
        stairs >= 8,
        "--kind {kind}: only {stairs} stairs of 100 ms or more"
    );
    let mut compared = 0;
    for pair in readings.windows(2) {
        let ((t1, a), (t2, b)) = (pair[0], pair[1]);
        if a != b {
            continue;
        }
        for (_, s) in samples.range(t1..=t2) {
            compared += 1;
            check(s, &a);
        }
    }
    // A sample is written just after each change, so most fall between a reading before the
    // change and one after it and are not compared here: the stairs above are the measure.
    eprintln!("--kind {kind}: {stairs} stairs, {compared} samples between equal readings");
    // And the steps themselves are there: 1 MiB each of this kind (the highest, not the last:
    // the simulator unmaps its memory as it exits, and the exit may catch that half done).
    let of_kind = |s: &Status| match kind {
        "anon" => s.anon,
        "file" => s.file,
        _ => s.shmem,
    };
    // From the lowest, not the first: the first sample may be the command before its exec
    // (the recorder's forked copy, held until followed), which can be the larger.
    let lowest = samples.values().map(of_kind).min().unwrap_or(0);
    let grown = samples.values().map(of_kind).max().unwrap_or(0) - lowest;
    assert!(grown >= 5 * MIB, "--kind {kind}: grew {grown} bytes");
}

#[test]
fn counters_agree_with_proc_status_within_a_page_anon() {
    let _one = serial();
    if can_load("counters_agree_with_proc_status_within_a_page_anon") {
        agrees_with_proc_status("anon");
    }
}

#[test]
fn counters_agree_with_proc_status_within_a_page_file() {
    let _one = serial();
    if can_load("counters_agree_with_proc_status_within_a_page_file") {
        agrees_with_proc_status("file");
    }
}

#[test]
fn counters_agree_with_proc_status_within_a_page_shmem() {
    let _one = serial();
    if can_load("counters_agree_with_proc_status_within_a_page_shmem") {
        agrees_with_proc_status("shmem");
    }
}

/// A 64 MiB spike held for 30 ms, inside a 1 s interval, recorded with `options`.
fn spike_is_in_the_peak(options: &[&str]) {
    let store = TestStore::new();
    record_with(
        &store,
        options,
        "1s",
        &[
            "spike",
            "--base",
            "8MiB",
            "--step",
            "64MiB",
            "--at",
            "1300ms",
            "--spike-len",
            "30ms",
            "--duration",
            "3s",
        ],
    );
    let peak: i64 = store
        .sql()
        .query_row("SELECT MAX(rss_anon) FROM samples", [], |r| r.get(0))
        .unwrap();
    assert!(
        peak >= 72 * MIB,
        "{options:?}: peak rss_anon {peak} misses the 64 MiB spike"
    );
    // Only the spike is that high: the samples before and after it are not.
    let high: i64 = store
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM samples WHERE rss_anon >= ?1",
            [64 * MIB],
            |r| r.get(0),
        )
        .unwrap();
    // Said when it fails: every sample, as (ms since the first, rss_anon, rss_file).
    let all: Vec<(i64, i64, i64)> = store
        .sql()
        .prepare(
            "SELECT (t_ns - (SELECT MIN(t_ns) FROM samples)) / 1000000, rss_anon, rss_file
             FROM samples ORDER BY t_ns",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        high, 1,
        "{options:?}: {high} samples at the spike's height: {all:?}"
    );
    // The show command's peak column has it too.
    let show = store.ok(&["show"]);
    assert!(show.contains("leak-sim"), "{show}");
}

#[test]
fn a_30ms_spike_inside_a_1s_interval_is_in_the_recorded_peak() {
    let _one = serial();
    if can_load("a_30ms_spike_inside_a_1s_interval_is_in_the_recorded_peak") {
        // Taken as the process releases it (munmap), or leaves the CPU while holding it.
        spike_is_in_the_peak(&[]);
    }
}

#[test]
fn a_30ms_spike_is_in_the_peak_with_rss_events_too() {
    let _one = serial();
    if can_load("a_30ms_spike_is_in_the_peak_with_rss_events_too") {
        spike_is_in_the_peak(&["--rss-events"]);
    }
}

#[test]
fn counters_agree_with_proc_status_within_a_page_with_rss_events() {
    let _one = serial();
    if can_load("counters_agree_with_proc_status_within_a_page_with_rss_events") {
        agrees_with_proc_status_using("anon", &["--rss-events"]);
    }
}

#[test]
fn a_childs_children_are_followed_with_their_parents() {
    let _one = serial();
    if !can_load("a_childs_children_are_followed_with_their_parents") {
        return;
    }
    let store = TestStore::new();
    record(
        &store,
        "50ms",
        &[
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
            "1500ms",
        ],
    );
    let sql = store.sql();
    let mut stmt = sql
        .prepare(
            "SELECT pid, ppid, exit_ns IS NOT NULL,
                (SELECT COUNT(*) FROM samples WHERE process_id = processes.id)
             FROM processes ORDER BY id",
        )
        .unwrap();
    let rows: Vec<(i64, Option<i64>, bool, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // The root, 2 children, 4 grandchildren.
    assert_eq!(rows.len(), 7, "{rows:?}");
    let root = rows[0].0;
    let children: Vec<i64> = rows
        .iter()
        .filter(|r| r.1 == Some(root))
        .map(|r| r.0)
        .collect();
    assert_eq!(children.len(), 2, "{rows:?}");
    let grandchildren = rows
        .iter()
        .filter(|r| r.1.is_some_and(|pp| children.contains(&pp)))
        .count();
    assert_eq!(grandchildren, 4, "{rows:?}");
    // Everyone exited, and that closed each history; each has samples of its own, several
    // for the growing leaves (the flat parents are written when they start and then held).
    for r in &rows {
        assert!(r.2, "no exit recorded: {r:?}");
        assert!(r.3 >= 1, "no sample: {r:?}");
        if r.1.is_some_and(|pp| children.contains(&pp)) {
            assert!(r.3 >= 3, "too few samples of a growing leaf: {r:?}");
        }
    }
}

#[test]
fn exit_closes_the_history() {
    let _one = serial();
    if !can_load("exit_closes_the_history") {
        return;
    }
    let store = TestStore::new();
    record(
        &store,
        "20ms",
        &[
            "churn",
            "--every",
            "100ms",
            "--step",
            "2MiB",
            "--child-life",
            "200ms",
            "--duration",
            "2s",
        ],
    );
    let sql = store.sql();
    let mut stmt = sql
        .prepare(
            "SELECT exit_ns, (SELECT MAX(t_ns) FROM samples WHERE process_id = processes.id)
             FROM processes ORDER BY id",
        )
        .unwrap();
    let rows: Vec<(Option<i64>, Option<i64>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        rows.len() >= 10,
        "{} processes for ~20 children",
        rows.len()
    );
    for (exit, last) in &rows {
        let exit = exit.unwrap_or_else(|| panic!("an exit was not recorded: {rows:?}"));
        if let Some(last) = last {
            assert!(*last <= exit, "a sample after the exit: {rows:?}");
        }
    }
}

#[test]
fn a_reused_pid_becomes_a_new_process() {
    let _one = serial();
    if !can_load("a_reused_pid_becomes_a_new_process") {
        return;
    }
    let store = TestStore::new();
    let stdout = record(
        &store,
        "20ms",
        &[
            "reuse",
            "--base",
            "4MiB",
            "--child-life",
            "400ms",
            "--duration",
            "20s",
        ],
    );
    let pid: u32 = stdout
        .trim()
        .strip_prefix("reuse pid=")
        .and_then(|s| s.strip_suffix(" ok"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected simulator output `{stdout}`"));
    let sql = store.sql();
    let mut stmt = sql
        .prepare(
            "SELECT start_time, exit_ns IS NOT NULL,
                (SELECT COUNT(*) FROM samples WHERE process_id = processes.id)
             FROM processes WHERE pid = ?1 ORDER BY id",
        )
        .unwrap();
    let rows: Vec<(i64, bool, i64)> = stmt
        .query_map([pid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2, "pid {pid} should be two processes: {rows:?}");
    assert!(rows[0].0 < rows[1].0, "start times must differ: {rows:?}");
    assert!(rows[0].1 && rows[1].1, "both exits recorded: {rows:?}");
    assert!(rows[0].2 > 0 && rows[1].2 > 0, "both sampled: {rows:?}");
}

#[test]
fn auto_as_an_unprivileged_user_falls_back_to_proc_and_says_why() {
    let _one = serial();
    let test = "auto_as_an_unprivileged_user_falls_back_to_proc_and_says_why";
    if !is_root() {
        skip(
            test,
            "dropping to an unprivileged user needs root to start with",
        );
        return;
    }
    let has_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_setpriv {
        skip(test, "setpriv (util-linux) is not installed");
        return;
    }
    let store = TestStore::new();
    // nobody must be able to create the store (and its WAL) in the directory.
    std::fs::set_permissions(
        store.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(common::memtools_user())
        .args(["record", "--backend", "auto", "--interval", "50ms", "--"])
        .arg(leak_sim())
        .args(["flat", "--duration", "500ms"])
        .env("MEMTOOLS_STORE", store.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("eBPF not possible"))
        .unwrap_or_else(|| panic!("no line saying why: {stderr}"));
    assert!(line.contains("root or CAP_BPF"), "{line}");
    assert!(stderr.contains("(procfs)"), "{stderr}");
    let s = &store.sessions()[0];
    assert_eq!(s["backend"], "procfs", "{s}");
    let reason = s["backend_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("eBPF not possible") && reason.contains("root or CAP_BPF"),
        "{s}"
    );
    assert!(s["samples"].as_u64().unwrap_or(0) > 0, "{s}");

    // `--backend ebpf` refuses, with the same reason.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::memtools_user())
        .args(["record", "--backend", "ebpf", "--"])
        .arg(leak_sim())
        .args(["flat", "--duration", "200ms"])
        .env("MEMTOOLS_STORE", store.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("root or CAP_BPF"), "{stderr}");
}

#[test]
fn recording_needs_no_tracefs() {
    let _one = serial();
    if !can_load("recording_needs_no_tracefs") {
        return;
    }
    if Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        skip(
            "recording_needs_no_tracefs",
            "debugfs exposes tracefs too, so unmounting /sys/kernel/tracing proves nothing",
        );
        return;
    }
    // In a mount namespace of its own, so neither the machine nor another recorder running
    // meanwhile sees tracefs go, or can mount it back under the test.
    let store = TestStore::new();
    let script = r#"
        umount /sys/kernel/tracing 2>/dev/null
        if [ -d /sys/kernel/tracing/events ]; then echo "TRACEFS before: mounted"; exit 1; fi
        "$0" record --backend ebpf --interval 50ms -- "$1" linear --step 1MiB --duration 500ms
        status=$?
        if [ -d /sys/kernel/tracing/events ]; then echo "TRACEFS after: mounted"
        else echo "TRACEFS after: absent"; fi
        exit $status
    "#;
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(common::memtools_user())
        .arg(leak_sim())
        .env("MEMTOOLS_STORE", store.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let session = &store.sessions()[0];
    let reason = session["backend_reason"].as_str().unwrap_or_default();
    if reason.contains("syscall tracepoints") {
        // The last resort needs tracefs for the tracepoints' ids, and mounts it.
        assert!(stdout.contains("after: mounted"), "{stdout}: {reason}");
    } else {
        // Nothing else needs it: the machine is left as it was.
        assert!(stdout.contains("after: absent"), "{stdout}: {reason}");
    }
    let samples = session["samples"].as_u64().unwrap_or(0);
    assert!(samples >= 3, "{samples} samples");
}

#[test]
fn a_process_shorter_than_the_interval_is_recorded_from_its_exit() {
    let _one = serial();
    if !can_load("a_process_shorter_than_the_interval_is_recorded_from_its_exit") {
        return;
    }
    let store = TestStore::new();
    // The pause lets the recorder attach before the short ones run; each lives ~1 ms, far
    // less than the 500 ms interval: /proc polling would never see them.
    let out = store.run(&[
        "record",
        "--backend",
        "ebpf",
        "--interval",
        "500ms",
        "--",
        "sh",
        "-c",
        "sleep 0.5; /bin/true; /bin/true; /bin/true; sleep 0.6",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql = store.sql();
    let mut stmt = sql
        .prepare(
            "SELECT p.name, p.exit_ns IS NOT NULL, MAX(s.rss_file) FROM processes p
             JOIN samples s ON s.process_id = p.id WHERE p.name = 'true' GROUP BY p.id",
        )
        .unwrap();
    let rows: Vec<(String, bool, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (name, exited, file) in &rows {
        assert!(*exited, "{name}: no exit");
        // Its own pages (the binary, libc) were counted before it exited.
        assert!(*file > 0, "{name}: no resident memory recorded: {rows:?}");
    }
}

/// A recorded process: (pid, ppid, name, exited, samples, peak_rss).
type Recorded = (i64, Option<i64>, String, bool, i64, Option<i64>);

/// The processes of one recorded session.
fn processes_of(store: &TestStore) -> Vec<Recorded> {
    let sql = store.sql();
    let mut stmt = sql
        .prepare(
            "SELECT p.pid, p.ppid, p.name, p.exit_ns IS NOT NULL,
                    (SELECT COUNT(*) FROM samples s WHERE s.process_id = p.id), p.peak_rss
             FROM processes p ORDER BY p.id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn five_hundred_children_of_a_millisecond_are_501_histories() {
    let _one = serial();
    if !can_load("five_hundred_children_of_a_millisecond_are_501_histories") {
        return;
    }
    let store = TestStore::new();
    // No pause: the command is held before its exec until the recorder follows it, so even
    // what it does at once is recorded.
    let out = store.run(&[
        "record",
        "--backend",
        "ebpf",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 500 ]; do /bin/true & i=$((i+1)); done; wait",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("incomplete"), "{stderr}");
    let procs = processes_of(&store);
    assert_eq!(procs.len(), 501, "{} processes: {stderr}", procs.len());
    let shell = procs[0].0;
    let children: Vec<_> = procs.iter().filter(|p| p.2 == "true").collect();
    assert_eq!(children.len(), 500, "{procs:?}");
    for (pid, ppid, name, exited, samples, peak) in children {
        assert_eq!(*ppid, Some(shell), "{pid} {name}");
        assert!(*exited, "{pid} {name}: no exit");
        assert!(*samples >= 1, "{pid} {name}: no sample");
        assert!(peak.is_some_and(|p| p > 0), "{pid} {name}: no peak");
    }
    let session = &store.sessions()[0];
    assert_eq!(session["processes"].as_u64(), Some(501));
    assert_eq!(session["processes_lost"].as_u64(), Some(0), "{session}");
    assert_eq!(session["events_lost"].as_u64(), Some(0), "{session}");
}

#[test]
fn a_process_that_lived_5ms_has_its_exit_sample() {
    let _one = serial();
    if !can_load("a_process_that_lived_5ms_has_its_exit_sample") {
        return;
    }
    let store = TestStore::new();
    let script = format!("{} flat --base 16MiB --duration 5ms", leak_sim());
    let out = store.run(&[
        "record",
        "--backend",
        "ebpf",
        "--interval",
        "1s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sql = store.sql();
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<[i64; 6]> {
        Ok([
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ])
    };
    let [ppid, shell, exit_ns, peak, last_t, most_anon] = sql
        .query_row(
            "SELECT p.ppid, (SELECT pid FROM processes WHERE name = 'sh'), p.exit_ns,
                    p.peak_rss, MAX(s.t_ns), MAX(s.rss_anon)
             FROM processes p JOIN samples s ON s.process_id = p.id
             WHERE p.name = 'leak-sim' GROUP BY p.id",
            [],
            row,
        )
        .unwrap();
    assert_eq!(ppid, shell, "its parent is the shell");
    // Its last sample is its figures at exit, taken at the exit's time (it unmapped its
    // 16 MiB just before: that top is a sample of its own, and its high-water mark).
    assert_eq!(last_t, exit_ns, "the last sample is not at the exit");
    assert!(
        most_anon >= 16 * MIB,
        "{most_anon} bytes of anon memory at most"
    );
    assert!(peak >= 16 * MIB, "peak {peak}");
}

#[test]
fn what_could_not_be_recorded_is_counted_stored_and_said() {
    let _one = serial();
    if !can_load("what_could_not_be_recorded_is_counted_stored_and_said") {
        return;
    }
    let many = "i=0; while [ $i -lt 300 ]; do /bin/true & i=$((i+1)); done; wait";
    // A table of 8 followed processes: most children cannot be followed.
    let store = TestStore::new();
    let out = store
        .cmd(&["record", "--backend", "ebpf", "--", "sh", "-c", many])
        .env("MEMTOOLS_EBPF_MAPS", "STATS=8")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let session = &store.sessions()[0];
    let lost = session["processes_lost"].as_u64().unwrap_or(0);
    assert!(lost > 0, "{session}");
    assert!(
        session["processes"].as_u64().unwrap_or(0) + lost >= 301,
        "recorded and lost do not add up: {session}"
    );
    assert!(
        stderr.contains(&format!("incomplete: {lost} processes not recorded")),
        "{stderr}"
    );
    let show = store.ok(&["show"]);
    assert!(show.contains("incomplete:"), "{show}");
    // A lifecycle queue of one page: events are lost.
    let store = TestStore::new();
    let out = store
        .cmd(&["record", "--backend", "ebpf", "--", "sh", "-c", many])
        .env("MEMTOOLS_EBPF_MAPS", "LIFE=4096")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let session = &store.sessions()[0];
    let events = session["events_lost"].as_u64().unwrap_or(0);
    assert!(events > 0, "{session}");
    assert!(stderr.contains("process events lost"), "{stderr}");
}

#[test]
fn the_backend_reason_says_how_the_mm_syscalls_are_hooked() {
    let _one = serial();
    if !can_load("the_backend_reason_says_how_the_mm_syscalls_are_hooked") {
        return;
    }
    let store = TestStore::new();
    record(
        &store,
        "100ms",
        &["linear", "--step", "1MiB", "--duration", "300ms"],
    );
    let reason = store.sessions()[0]["backend_reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("mm syscalls hooked by fentry")
            || reason.contains("mm syscalls seen through the mmap_lock tracepoint"),
        "{reason}"
    );
    // The simulator maps each step: its calls and bytes are counted.
    let (mmaps, mapped): (i64, i64) = store
        .sql()
        .query_row(
            "SELECT MAX(mmap_calls), MAX(mapped_bytes) FROM samples",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(mmaps >= 3, "{mmaps} mmap calls counted ({reason})");
    assert!(
        mapped >= 3 * MIB,
        "{mapped} bytes mapped counted ({reason})"
    );
    // With the cheap ways left out, the last resort and what it costs are said.
    let store = TestStore::new();
    let sim = leak_sim();
    let out = store
        .cmd(&[
            "record",
            "--backend",
            "ebpf",
            "--interval",
            "50ms",
            "--",
            sim,
            "linear",
            "--step",
            "1MiB",
            "--duration",
            "300ms",
        ])
        .env("MEMTOOLS_EBPF_SKIP", "mmap_exit,mmap_locked")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = &store.sessions()[0];
    let reason = session["backend_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("syscall tracepoints"), "{reason}");
    assert!(
        reason.contains("every system call on the machine"),
        "{reason}"
    );
    // The mapping calls are still counted that way.
    let sql = store.sql();
    let mmaps: i64 = sql
        .query_row("SELECT MAX(mmap_calls) FROM samples", [], |r| r.get(0))
        .unwrap();
    assert!(mmaps > 0, "no mmap counted with the syscall tracepoints");
}
