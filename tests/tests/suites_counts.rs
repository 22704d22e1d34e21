//! Issue 14 with real pytest through the plugin (contrib/pytest_memtools.py): a suite whose
//! tests each start a thread nobody joins, one whose tests each open a file nobody closes, and
//! their clean twins (a thread pool every test shares; files opened with `with`). Recorded
//! under `record --fail-on-leak`, which judges memory, threads and descriptors together.

mod common;

use std::path::{Path, PathBuf};

use common::{TestStore, is_root, skip};
use serde_json::Value;

const LEAKS_THREADS: &str = r#"
import threading
import time

import pytest

_forever = threading.Event()


@pytest.mark.parametrize("i", range(40))
def test_starts_a_worker(i):
    # A worker nobody joins, waiting for an event nobody sets.
    threading.Thread(target=_forever.wait, daemon=True).start()
    time.sleep(0.02)
"#;

const POOLED_THREADS: &str = r#"
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

_pool = ThreadPoolExecutor(max_workers=4)


@pytest.mark.parametrize("i", range(40))
def test_uses_the_pool(i):
    assert sum(_pool.map(lambda x: x * x, range(16))) == 1240
    time.sleep(0.02)
"#;

const LEAKS_FILES: &str = r#"
import time

import pytest

_opened = []


@pytest.mark.parametrize("i", range(40))
def test_reads_a_file(i):
    f = open(__file__)
    _opened.append(f)
    assert f.readline()
    time.sleep(0.02)
"#;

const CLOSES_FILES: &str = r#"
import time

import pytest


@pytest.mark.parametrize("i", range(40))
def test_reads_a_file(i):
    with open(__file__) as f:
        assert f.readline()
    time.sleep(0.02)
"#;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib")
}

/// Runs `suite` under `record --fail-on-leak` with the plugin, recorded by /proc; the exit
/// status and the pytest process's entry in the JSON report.
fn run(suite: &str) -> (Option<i32>, Value, String) {
    run_with("procfs", suite)
}

/// [`run`] with `backend`.
fn run_with(backend: &str, suite: &str) -> (Option<i32>, Value, String) {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "pytest is missing: `cargo xtask setup` installs it");
    let store = TestStore::new();
    let file = store.dir.path().join("test_counts.py");
    std::fs::write(&file, suite).expect("writing the suite");
    let json = store.dir.path().join("report.json");
    let spec = format!("json:{}", json.display());
    let mut cmd = store.cmd(&[
        "record",
        "--backend",
        backend,
        "--interval",
        "10ms",
        "--fail-on-leak",
        "--report",
        &spec,
        "--",
        "python3",
        "-m",
        "pytest",
        "-q",
        "-p",
        "pytest_memtools",
        "-p",
        "no:cacheprovider",
        file.to_str().expect("a UTF-8 path"),
    ]);
    cmd.env("PYTHONPATH", contrib())
        .current_dir(store.dir.path());
    let out = cmd.output().expect("running memtools-user record");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("40 passed"), "{said}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("a report"))
        .expect("a JSON report");
    let pytest = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "python3")
        .max_by_key(|p| p["samples"].as_u64())
        .cloned()
        .unwrap_or_else(|| panic!("no pytest process: {said}"));
    (out.status.code(), pytest, said)
}

#[test]
fn pytest_tests_leaking_threads_fail_and_a_shared_pool_passes() {
    let (code, p, said) = run(LEAKS_THREADS);
    assert_eq!(code, Some(3), "{said}");
    assert_eq!(p["verdict"], "leak", "{p}");
    let threads = &p["metrics"]["threads"];
    assert_eq!(threads["verdict"], "leak", "{p}");
    assert_eq!(threads["detector"], "phases", "{p}");
    let per_test = threads["tests"]["per_test_bytes"].as_f64().unwrap();
    assert!((0.8..1.3).contains(&per_test), "{p}");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("leaks threads: kept "),
        "{p}"
    );
    // On a loaded machine two test ends may share a sample: about one per test.
    assert!(said.contains("leaks threads: kept "), "{said}");

    let (code, p, said) = run(POOLED_THREADS);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(p["metrics"]["threads"]["verdict"], "ok", "{p}");
    // The pool is there: more threads than the interpreter's own.
    assert!(
        p["metrics"]["threads"]["peak"].as_u64().unwrap() >= 2,
        "{p}"
    );
}

#[test]
fn pytest_tests_leaking_files_fail_and_closed_files_pass() {
    let (code, p, said) = run(LEAKS_FILES);
    assert_eq!(code, Some(3), "{said}");
    let fds = &p["metrics"]["fds"];
    assert_eq!(fds["verdict"], "leak", "{p}");
    let per_test = fds["tests"]["per_test_bytes"].as_f64().unwrap();
    assert!((0.8..1.3).contains(&per_test), "{p}");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("leaks file descriptors: kept "),
        "{p}"
    );
    // Threads and memory were judged too, and do not leak.
    assert_eq!(p["metrics"]["threads"]["verdict"], "ok", "{p}");
    assert_ne!(p["metrics"]["rss"]["verdict"], "leak", "{p}");

    let (code, p, said) = run(CLOSES_FILES);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(p["metrics"]["fds"]["verdict"], "ok", "{p}");
}

/// The same suites recorded by the eBPF backend (the real kernel programs: root, skipped loudly
/// otherwise): each test's thread or file is seen test by test there too.
#[test]
fn ebpf_pytest_tests_leaking_threads_or_files_fail_and_their_clean_twins_pass() {
    if !is_root() {
        skip(
            "ebpf_pytest_tests_leaking_threads_or_files_fail_and_their_clean_twins_pass",
            "loading eBPF programs needs root",
        );
        return;
    }
    for (suite, metric, what) in [
        (LEAKS_THREADS, "threads", "leaks threads: kept "),
        (LEAKS_FILES, "fds", "leaks file descriptors: kept "),
    ] {
        let (code, p, said) = run_with("ebpf", suite);
        assert!(!said.contains("eBPF object was not built"), "{said}");
        assert_eq!(code, Some(3), "{said}");
        let m = &p["metrics"][metric];
        assert_eq!(m["verdict"], "leak", "{p}");
        let per_test = m["tests"]["per_test_bytes"].as_f64().unwrap();
        assert!((0.8..1.3).contains(&per_test), "{p}");
        assert!(p["reason"].as_str().unwrap().contains(what), "{p}");
    }
    for (suite, metric) in [(POOLED_THREADS, "threads"), (CLOSES_FILES, "fds")] {
        let (code, p, said) = run_with("ebpf", suite);
        assert_eq!(code, Some(0), "{said}");
        assert_eq!(p["metrics"][metric]["verdict"], "ok", "{p}");
    }
}
