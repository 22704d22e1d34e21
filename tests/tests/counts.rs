//! Issue 14 end to end: threads and open file descriptors recorded for every followed process,
//! with the /proc backend and the eBPF one (the real kernel programs: root, skipped loudly
//! otherwise), the limits they run into, and the verdicts `record --fail-on-leak` gives on them: the leak simulator's `threads`
//! and `fds` shapes and their steady counterparts, and a shell suite whose tests leak a thread
//! or a descriptor each (or use one and give it back).

mod common;

use std::sync::{Mutex, MutexGuard};

use common::{TestStore, is_root, leak_sim, service_suite, skip};
use serde_json::Value;

/// Whether the eBPF backend can record here; says so loudly when it cannot (not root, or a
/// build without the eBPF object). The eBPF tests run one at a time, as in `ebpf.rs`.
fn ebpf(test: &str) -> Option<MutexGuard<'static, ()>> {
    static LOCK: Mutex<()> = Mutex::new(());
    if !is_root() {
        skip(test, "loading eBPF programs needs root");
        return None;
    }
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let store = TestStore::new();
    let out = store.run(&["record", "--backend", "ebpf", "--", "/bin/true"]);
    if String::from_utf8_lossy(&out.stderr).contains("eBPF object was not built") {
        skip(
            test,
            "memtools-user was built without its eBPF object (run `cargo xtask setup`)",
        );
        return None;
    }
    Some(guard)
}

/// The backend the latest session of `store` was recorded with.
fn backend_of(store: &TestStore) -> String {
    store
        .sql()
        .query_row(
            "SELECT backend FROM sessions ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("a session")
}

/// Records `argv` with `backend` at `interval`, with `extra` options before the `--`.
pub fn record(
    store: &TestStore,
    backend: &str,
    interval: &str,
    extra: &[&str],
    argv: &[&str],
) -> std::process::Output {
    let mut args = vec!["record", "--backend", backend, "--interval", interval];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(argv);
    store.run(&args)
}

/// Every sample of one metric of the latest session, per process name: (pid, values in time
/// order), from `export --format json --metric NAME`.
fn exported(store: &TestStore, metric: &str) -> Vec<(String, u64, Vec<u64>)> {
    let out = store.ok(&["export", "--format", "json", "--metric", metric]);
    let mut by_pid: Vec<(String, u64, Vec<u64>)> = Vec::new();
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let pid = v["pid"].as_u64().unwrap();
        let value = v[metric].as_u64().expect("the metric on every line");
        let name = v["name"].as_str().unwrap().to_string();
        match by_pid.iter_mut().find(|p| p.1 == pid) {
            Some(p) => p.2.push(value),
            None => by_pid.push((name, pid, vec![value])),
        }
    }
    by_pid
}

/// The values of the leak simulator's history of `metric`.
fn sim_values(store: &TestStore, metric: &str) -> Vec<u64> {
    exported(store, metric)
        .into_iter()
        .find(|p| p.0 == "leak-sim")
        .unwrap_or_else(|| panic!("no leak-sim in the {metric} export"))
        .2
}

/// `leak-sim threads` and `fds` recorded with `backend`: each history rises by exactly what the
/// simulator started or opened, and the steady pools stay at their size.
pub fn counts_are_recorded(backend: &str) {
    let store = TestStore::new();
    let sim = leak_sim();
    // 40 threads, one per 50 ms, held half a second.
    let out = record(
        &store,
        backend,
        "20ms",
        &[],
        &[
            sim,
            "threads",
            "--every",
            "50ms",
            "--duration",
            "2s",
            "--hold",
            "500ms",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        backend_of(&store),
        backend,
        "recorded with the backend asked for"
    );
    let threads = sim_values(&store, "threads");
    let (first, last) = (threads[0], *threads.last().unwrap());
    assert!(first <= 2, "{threads:?}");
    assert_eq!(last, 41, "the main thread and 40 more: {threads:?}");
    // Thread by thread: never more than a few between two samples 20 ms apart.
    assert!(
        threads.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 3),
        "{threads:?}"
    );

    // 40 descriptors, and the standard three; held a second and a half, so the eBPF backend's
    // scan (once a second) sees the last ones whatever the timing.
    let out = record(
        &store,
        backend,
        "20ms",
        &[],
        &[
            sim,
            "fds",
            "--every",
            "50ms",
            "--duration",
            "2s",
            "--hold",
            "1500ms",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The simulator starts with what it inherited (the standard three, and whatever the test
    // runner holds open): the first sample is that, or that and the first descriptor.
    let fds = sim_values(&store, "fds");
    let (low, peak) = (*fds.iter().min().unwrap(), *fds.iter().max().unwrap());
    assert!((39..=40).contains(&(peak - low)), "{fds:?}");
    assert_eq!(*fds.last().unwrap(), peak, "{fds:?}");
    assert!(fds.windows(2).all(|w| w[1] >= w[0]), "{fds:?}");
    // Descriptor by descriptor. The eBPF backend has no hook on opening a file: its scan (once
    // a second) sees the first move, and it counts at every poll from then on while they move.
    let steps: Vec<u64> = fds.windows(2).map(|w| w[1] - w[0]).collect();
    let from = match backend {
        "ebpf" => steps.iter().position(|&d| d > 0).map_or(0, |i| i + 1),
        _ => 0,
    };
    assert!(steps[from..].iter().all(|&d| d <= 3), "{fds:?}");

    // A pool of 5 descriptors, opened and closed every tick: 5 above the standard ones.
    let out = record(
        &store,
        backend,
        "20ms",
        &[],
        &[
            sim,
            "fds",
            "--pool",
            "5",
            "--every",
            "20ms",
            "--duration",
            "2s",
            "--hold",
            "1200ms",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Filled to 5 (one more for a moment, between an open and its close), then held there.
    let fds = sim_values(&store, "fds");
    let (low, peak) = (*fds.iter().min().unwrap(), *fds.iter().max().unwrap());
    assert!((4..=6).contains(&(peak - low)), "{fds:?}");
    let last = *fds.last().unwrap();
    assert!((4..=5).contains(&(last - low)), "{fds:?}");
    // And a pool of 4 threads, one joined and one started every tick.
    let out = record(
        &store,
        backend,
        "20ms",
        &[],
        &[
            sim,
            "threads",
            "--pool",
            "4",
            "--every",
            "20ms",
            "--duration",
            "2s",
            "--hold",
            "1200ms",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let threads = sim_values(&store, "threads");
    assert!(threads.iter().all(|&n| n <= 6), "{threads:?}");
    assert_eq!(*threads.last().unwrap(), 5, "{threads:?}");
}

#[test]
fn procfs_records_threads_and_descriptors() {
    counts_are_recorded("procfs");
}

#[test]
fn ebpf_records_threads_and_descriptors() {
    if let Some(_one_at_a_time) = ebpf("ebpf_records_threads_and_descriptors") {
        counts_are_recorded("ebpf");
    }
}

/// A recording of a shell suite of 60 tests around `leak-sim serve`, each test sending
/// `command`, gated with `record --fail-on-leak` (every metric), with a JSON report; `prelude`
/// runs first in the suite's shell (a `ulimit`).
pub fn suite(backend: &str, command: &str, prelude: &str) -> (std::process::Output, Value) {
    let store = TestStore::new();
    let script = format!(
        "{prelude}\n{}",
        service_suite(store.dir.path(), "20MiB", Some(command), 60, None)
    );
    let json = store.dir.path().join("report.json");
    let spec = format!("json:{}", json.display());
    let out = record(
        &store,
        backend,
        "20ms",
        &["--fail-on-leak", "--report", &spec],
        &["sh", "-c", &script],
    );
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out, serde_json::from_str(&text).expect("a JSON report"))
}

/// The service in a suite's report.
pub fn service(report: &Value) -> &Value {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "leak-sim")
        .unwrap_or_else(|| panic!("no leak-sim: {report}"))
}

/// A suite whose tests each keep a descriptor (or a thread) fails the gate, saying which and
/// how much per test; one whose tests use and give back passes.
pub fn suites_leaking_counts_fail_the_gate(backend: &str) {
    for (keep, give_back, metric, what) in [
        ("fd", "use-fd", "fds", "file descriptors"),
        ("thread", "use-thread", "threads", "threads"),
    ] {
        let (out, report) = suite(backend, keep, "");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{said}");
        assert_eq!(report["metric"], "all");
        let p = service(&report);
        assert_eq!(p["verdict"], "leak", "{p}");
        assert!(
            p["leaking"].as_array().unwrap().iter().any(|m| m == metric),
            "{p}"
        );
        let m = &p["metrics"][metric];
        assert_eq!(m["verdict"], "leak", "{m}");
        assert_eq!(m["unit"], "count");
        assert_eq!(m["detector"], "phases");
        // 60 kept over the 59 tests after the first: one each.
        let per_test = m["tests"]["per_test_bytes"].as_f64().unwrap();
        assert!((0.9..1.2).contains(&per_test), "{m}");
        assert!(m["tests"]["count"].as_u64().unwrap() >= 45, "{m}");
        let reason = p["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("leaks {what}: kept 1 after each of ")),
            "{reason}"
        );
        assert!(
            said.contains(&format!("leaks {what}: kept 1 after each of")),
            "{said}"
        );

        let (out, report) = suite(backend, give_back, "");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{said}");
        let p = service(&report);
        assert_eq!(p["verdict"], "ok", "{p}");
        assert_eq!(p["metrics"][metric]["verdict"], "ok", "{p}");
        assert!(
            p["metrics"][metric]["reason"]
                .as_str()
                .unwrap()
                .starts_with("kept nothing that lasts"),
            "{p}"
        );
    }
}

#[test]
fn procfs_suites_leaking_threads_or_descriptors_fail_the_gate() {
    suites_leaking_counts_fail_the_gate("procfs");
}

#[test]
fn ebpf_suites_leaking_threads_or_descriptors_fail_the_gate() {
    if let Some(_one_at_a_time) = ebpf("ebpf_suites_leaking_threads_or_descriptors_fail_the_gate") {
        suites_leaking_counts_fail_the_gate("ebpf");
    }
}

/// The open-file limit is recorded as the program ran under it (set by `ulimit -n` just before
/// its exec), and a leak near it says when it gets there.
pub fn a_leak_near_its_open_file_limit_says_when(backend: &str) {
    let (out, report) = suite(backend, "fd", "ulimit -n 128");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = &service(&report)["metrics"]["fds"];
    assert_eq!(m["limit"], 128, "{m}");
    assert_eq!(m["limit_source"], "open_files");
    assert!(m["time_to_limit_s"].as_f64().unwrap() > 0.0, "{m}");
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .contains("; at this rate it reaches its limit of 128 in "),
        "{m}"
    );
}

#[test]
fn procfs_a_leak_near_its_open_file_limit_says_when() {
    a_leak_near_its_open_file_limit_says_when("procfs");
}

#[test]
fn ebpf_a_leak_near_its_open_file_limit_says_when() {
    if let Some(_one_at_a_time) = ebpf("ebpf_a_leak_near_its_open_file_limit_says_when") {
        a_leak_near_its_open_file_limit_says_when("ebpf");
    }
}

/// The recorder raises its own open-file limit to follow many processes; the command still
/// runs under the one it was given.
#[test]
fn the_command_runs_under_its_users_open_file_limit() {
    use std::os::unix::process::CommandExt;
    let store = TestStore::new();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let soft = 200.min(hard);
    let mut cmd = store.cmd(&[
        "record",
        "--backend",
        "procfs",
        "--",
        "sh",
        "-c",
        "ulimit -n; sleep 0.3",
    ]);
    // SAFETY: setrlimit is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        soft.to_string()
    );
    // And that is the limit stored with it.
    let stored: Option<i64> = store
        .sql()
        .query_row(
            "SELECT open_files_limit FROM processes WHERE name = 'sh'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, Some(soft as i64));
}

/// `show`, `detect` and `export` take `--metric threads|fds`; `detect --metric all` and the
/// reports say what leaks.
#[test]
fn the_commands_take_the_count_metrics() {
    let store = TestStore::new();
    let script = service_suite(store.dir.path(), "20MiB", Some("fd"), 60, None);
    let out = record(&store, "procfs", "20ms", &[], &["sh", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = store.ok(&["show", "--metric", "fds"]);
    assert!(
        show.contains("file descriptors per process (fds)"),
        "{show}"
    );
    assert!(show.contains("leak-sim"), "{show}");
    let detect = store.run(&["detect", "--metric", "fds", "--fail-on-leak"]);
    let text = String::from_utf8_lossy(&detect.stdout);
    assert_eq!(detect.status.code(), Some(3), "{text}");
    assert!(text.contains("fds of "), "{text}");
    assert!(text.contains("kept 1 after each of"), "{text}");
    let all = store.run(&["detect", "--metric", "all", "--fail-on-leak"]);
    let text = String::from_utf8_lossy(&all.stdout);
    assert_eq!(all.status.code(), Some(3), "{text}");
    assert!(text.contains("rss, threads and fds of "), "{text}");
    assert!(
        text.contains("leaks file descriptors: kept 1 after each of"),
        "{text}"
    );
    // Memory alone, the default: the service keeps no memory.
    let mem = store.run(&["detect", "--fail-on-leak"]);
    assert_eq!(
        mem.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&mem.stdout)
    );
    // A CSV of descriptors for other tools, in the value column.
    let csv = store.ok(&["export", "--format", "csv", "--metric", "fds"]);
    let last = csv.lines().rfind(|l| l.contains("leak-sim")).unwrap();
    let value: u64 = last.rsplit(',').next().unwrap().trim().parse().unwrap();
    assert!((60..=70).contains(&value), "{last}");
    // JUnit names the failure for what leaks.
    let junit = store.dir.path().join("leaks.xml");
    let spec = format!("junit:{}", junit.display());
    let out = record(
        &store,
        "procfs",
        "20ms",
        &["--fail-on-leak", "--report", &spec],
        &["sh", "-c", &script],
    );
    assert_eq!(out.status.code(), Some(3));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("type=\"fd-leak\""), "{xml}");
    assert!(xml.contains("leak-sim leaks file descriptors"), "{xml}");
    assert!(xml.contains("name=\"peak_fds\""), "{xml}");
}
