//! Issue 12 end to end: real test suites recorded under `record --fail-on-leak`, each marking
//! its tests as phases, with the verdicts a CI job gates on. The same four shapes from three
//! harnesses: pytest through the plugin (contrib/pytest_memtools.py, importing numpy, scipy and
//! matplotlib as real suites do), a Rust harness (`rust-suite`, with the README's `phase`
//! helper) and a shell suite (`echo ... > "$MEMTOOLS_PHASES"`):
//!
//! - heavy start-up, then quick tests: not a leak;
//! - a test starting a worker that builds a large buffer and exits: not a leak, its peak said;
//! - a module-level cache keeping 3 MiB after each of 60 tests: a leak;
//! - a large buffer released after each test: not a leak.
//!
//! The pytest runs happen with the page cache dropped first (as on a fresh CI runner: imports
//! are slow) and again warm, and must agree. Dropping the cache needs root: without it the cold
//! runs are skipped, loudly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TestStore, is_root, leak_sim, service_suite, skip};
use serde_json::Value;

const MIB: f64 = 1048576.0;

/// Empties the page cache, so imports read from disk as on a fresh CI runner. False (said)
/// when not root.
fn drop_page_cache(test: &str) -> bool {
    if !is_root() {
        skip(
            test,
            "the cold-cache run needs root (echo 3 > /proc/sys/vm/drop_caches)",
        );
        return false;
    }
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("dropping the page cache");
    true
}

/// A recording of `argv` with phases, at 10 ms with /proc, gated on leaks, with a JSON report.
struct Run {
    out: Output,
    report: Value,
}

impl Run {
    fn record(store: &TestStore, argv: &[&str], extra: &[&str], env: &[(&str, &Path)]) -> Run {
        let json = store.dir.path().join("report.json");
        let _ = std::fs::remove_file(&json);
        let spec = format!("json:{}", json.display());
        let mut args = vec![
            "record",
            "--backend",
            "procfs",
            "--interval",
            "10ms",
            "--fail-on-leak",
            "--report",
            &spec,
        ];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(argv);
        let mut cmd = store.cmd(&args);
        cmd.current_dir(store.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running memtools-user record");
        let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let report = serde_json::from_str(&text).expect("a JSON report");
        Run { out, report }
    }

    fn said(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    fn processes(&self) -> &Vec<Value> {
        self.report["processes"].as_array().expect("processes")
    }

    /// The process called `name` whose command line contains `needle`, the longest-lived. (The
    /// recorder reads a command line found empty in the instant of an exec again at the next
    /// tick; one that exits within that tick keeps it empty: where a process is the only one of
    /// its name, give an empty needle.)
    fn process(&self, name: &str, needle: &str) -> &Value {
        self.processes()
            .iter()
            .filter(|p| p["name"] == name)
            .filter(|p| p["cmdline"].as_str().unwrap_or("").contains(needle))
            .max_by_key(|p| p["samples"].as_u64())
            .unwrap_or_else(|| panic!("no {name} running {needle:?}: {}", self.said()))
    }

    fn leaks(&self) -> Vec<String> {
        self.processes()
            .iter()
            .filter(|p| p["verdict"] == "leak")
            .map(|p| format!("{} {}: {}", p["name"], p["cmdline"], p["reason"]))
            .collect()
    }
}

/// The verdict, reason and detector of a process, for comparing runs.
fn verdict(p: &Value) -> (String, String) {
    (
        p["verdict"].as_str().unwrap_or("").to_string(),
        p["detector"].as_str().unwrap_or("").to_string(),
    )
}

fn reason(p: &Value) -> &str {
    p["reason"].as_str().unwrap_or("")
}

// ---- pytest ----

const HEAVY_IMPORTS: &str = r#"import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
"#;

/// Quick tests, a worker building 300 MiB and exiting, tests releasing 200 MiB each.
const CLEAN_SUITE: &str = r#"
WORKER = """
import time
import numpy as np
a = np.empty(300 * 2**20 // 8)
step = 10 * 2**20 // 8
for i in range(0, a.size, step):
    a[i:i + step] = 1.0
    time.sleep(0.01)
with open("/dev/null", "wb") as f:
    a.tofile(f)
time.sleep(0.2)
"""


@pytest.mark.parametrize("i", range(10))
def test_quick(i):
    assert scipy.stats.norm.cdf(0.0) == 0.5
    assert np.allclose(scipy.linalg.inv(np.eye(3)), np.eye(3))
    time.sleep(0.02)


def test_starts_a_worker():
    subprocess.run([sys.executable, "-c", WORKER, "memtools-worker"], check=True)


@pytest.mark.parametrize("i", range(20))
def test_big_buffer(i):
    a = np.ones(200 * 2**20 // 8)
    assert a.sum() > 0
    del a
    time.sleep(0.02)
"#;

/// A module-level cache keeping 3 MiB after each of 60 tests.
const LEAKY_SUITE: &str = r#"
_cache = []


@pytest.mark.parametrize("i", range(60))
def test_cached(i):
    _cache.append(np.ones(3 * 2**20 // 8))
    fig = plt.figure()
    plt.close(fig)
    time.sleep(0.02)
"#;

fn has_heavy_imports() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pytest, numpy, scipy, matplotlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "pytest, numpy, scipy or matplotlib is missing: `cargo xtask setup` installs them \
         (python3 -m pip install pytest numpy scipy matplotlib)"
    );
}

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib")
}

fn pytest(store: &TestStore, suite: &str, extra: &[&str]) -> Run {
    let file = store.dir.path().join("test_suite.py");
    std::fs::write(&file, format!("{HEAVY_IMPORTS}{suite}")).expect("writing the suite");
    let contrib = contrib();
    Run::record(
        store,
        &[
            "python3",
            "-m",
            "pytest",
            "-q",
            "-p",
            "pytest_memtools",
            "-p",
            "no:cacheprovider",
            file.to_str().expect("a UTF-8 path"),
        ],
        extra,
        &[("PYTHONPATH", &contrib)],
    )
}

/// Runs a suite cold (when root) and warm; returns the runs, cold first when there is one.
fn cold_and_warm(test: &str, suite: &str, extra: &[&str]) -> Vec<Run> {
    has_heavy_imports();
    let mut runs = Vec::new();
    for cold in [true, false] {
        if cold && !drop_page_cache(test) {
            continue;
        }
        let store = TestStore::new();
        runs.push(pytest(&store, suite, extra));
    }
    runs
}

#[test]
fn pytest_heavy_imports_a_worker_and_released_buffers_are_not_leaks() {
    let runs = cold_and_warm(
        "pytest_heavy_imports_a_worker_and_released_buffers_are_not_leaks",
        CLEAN_SUITE,
        &[],
    );
    let mut seen = Vec::new();
    for run in &runs {
        let said = run.said();
        assert!(said.contains("31 passed"), "{said}");
        assert_eq!(run.out.status.code(), Some(0), "{:?}\n{said}", run.leaks());
        assert!(run.leaks().is_empty(), "{:?}", run.leaks());
        let suite = run.process("python3", "pytest");
        // Judged across its 30 tests after the first: nothing kept, or what the allocator kept
        // once after the first big buffer (a working set built once).
        assert_eq!(suite["verdict"], "ok", "{suite}");
        assert!(reason(suite).starts_with("kept "), "{suite}");
        assert_eq!(suite["detector"], "phases");
        assert!(suite["tests"]["count"].as_u64().unwrap() >= 25, "{suite}");
        // The worker: its peak, said and reported, not a leak.
        let worker = run.process("python3", "memtools-worker");
        assert_eq!(worker["verdict"], "ok", "{worker}");
        assert!(reason(worker).contains("its peak, not a leak"), "{worker}");
        assert!(
            worker["peak_bytes"].as_f64().unwrap() > 300.0 * MIB,
            "{worker}"
        );
        assert!(said.contains("peak"), "{said}");
        seen.push((verdict(suite), verdict(worker)));
    }
    // Cold and warm agree.
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}

#[test]
fn pytest_a_cache_kept_across_60_tests_is_a_leak() {
    let runs = cold_and_warm(
        "pytest_a_cache_kept_across_60_tests_is_a_leak",
        LEAKY_SUITE,
        &[],
    );
    let mut seen = Vec::new();
    for run in &runs {
        let said = run.said();
        assert!(said.contains("60 passed"), "{said}");
        assert_eq!(run.out.status.code(), Some(3), "{said}");
        let suite = run.process("python3", "pytest");
        assert_eq!(suite["verdict"], "leak", "{suite}");
        assert_eq!(suite["detector"], "phases");
        let per_test = suite["tests"]["per_test_bytes"].as_f64().unwrap() / MIB;
        assert!((2.0..4.0).contains(&per_test), "{suite}");
        // 59 tests after the first; on a loaded machine the recorder may read two test ends
        // in one tick, which then count once.
        assert!(suite["tests"]["count"].as_u64().unwrap() >= 45, "{suite}");
        assert_eq!(run.leaks().len(), 1, "{:?}", run.leaks());
        seen.push(verdict(suite));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}

// ---- a Rust harness ----

fn rust_suite(shape: &str) -> Run {
    let store = TestStore::new();
    Run::record(&store, &[env!("CARGO_BIN_EXE_rust-suite"), shape], &[], &[])
}

#[test]
fn rust_harness_shapes() {
    let run = rust_suite("imports");
    assert_eq!(run.out.status.code(), Some(0), "{}", run.said());
    let p = run.process("rust-suite", "");
    assert_eq!(p["verdict"], "ok", "{p}");
    assert!(reason(p).starts_with("kept "), "{p}");
    assert!(p["tests"]["count"].as_u64().unwrap() >= 15, "{p}");

    let run = rust_suite("worker");
    assert_eq!(run.out.status.code(), Some(0), "{}", run.said());
    // The worker: the other rust-suite, the one that built 300 MiB.
    let worker = run
        .processes()
        .iter()
        .filter(|p| p["name"] == "rust-suite")
        .max_by_key(|p| p["peak_bytes"].as_u64())
        .expect("a worker");
    assert_eq!(worker["verdict"], "ok", "{worker}");
    assert!(reason(worker).contains("its peak, not a leak"), "{worker}");
    assert!(
        worker["peak_bytes"].as_f64().unwrap() >= 300.0 * MIB,
        "{worker}"
    );
    assert!(run.leaks().is_empty(), "{:?}", run.leaks());

    let run = rust_suite("cache");
    assert_eq!(run.out.status.code(), Some(3), "{}", run.said());
    let p = run.process("rust-suite", "");
    assert_eq!(p["verdict"], "leak", "{p}");
    let per_test = p["tests"]["per_test_bytes"].as_f64().unwrap() / MIB;
    assert!((2.0..4.0).contains(&per_test), "{p}");
    assert!(p["tests"]["count"].as_u64().unwrap() >= 45, "{p}");

    let run = rust_suite("released");
    assert_eq!(run.out.status.code(), Some(0), "{}", run.said());
    let p = run.process("rust-suite", "");
    assert_eq!(p["verdict"], "ok", "{p}");
    assert!(p["peak_bytes"].as_f64().unwrap() >= 100.0 * MIB, "{p}");
}

// ---- a shell suite ----

/// A shell suite around a service (see [`common::service_suite`]), recorded.
fn shell(
    base: &str,
    command: Option<&str>,
    tests: usize,
    also: Option<&str>,
    extra: &[&str],
) -> Run {
    let store = TestStore::new();
    let script = service_suite(store.dir.path(), base, command, tests, also);
    Run::record(&store, &["sh", "-c", &script], extra, &[])
}

#[test]
fn shell_suite_shapes() {
    let worker = format!(
        "{} linear --step 20MiB --every 20ms --duration 600ms",
        leak_sim()
    );
    // Start-up (the service loads 200 MiB), quick tests, and a worker: no leak, the worker's
    // peak over a budget for its name fails the run all the same.
    let run = shell(
        "200MiB",
        None,
        20,
        Some(&worker),
        &[
            "--fail-on-peak",
            "1GiB",
            "--fail-on-peak",
            "leak-sim=100MiB",
        ],
    );
    let said = run.said();
    assert!(run.leaks().is_empty(), "{:?}", run.leaks());
    let service = run.process("leak-sim", "serve");
    assert_eq!(service["verdict"], "ok", "{service}");
    assert!(reason(service).starts_with("kept "), "{service}");
    assert!(
        service["tests"]["count"].as_u64().unwrap() >= 20,
        "{service}"
    );
    let w = run.process("leak-sim", "linear");
    assert_eq!(w["verdict"], "ok", "{w}");
    assert!(reason(w).contains("its peak, not a leak"), "{w}");
    // The service (200 MiB) and the worker (600 MiB) are both leak-sim: both over 100 MiB.
    assert_eq!(w["over_budget"], true, "{w}");
    assert_eq!(w["peak_budget_bytes"], 100u64 << 20);
    assert_eq!(run.report["over_budget"], 2, "{said}");
    assert_eq!(run.out.status.code(), Some(3), "{said}");
    assert!(said.contains("over their peak budget"), "{said}");

    // A cache in the service keeping 3 MiB per test: a leak.
    let run = shell("20MiB", Some("keep 3MiB"), 60, None, &[]);
    assert_eq!(run.out.status.code(), Some(3), "{}", run.said());
    let service = run.process("leak-sim", "serve");
    assert_eq!(service["verdict"], "leak", "{service}");
    let per_test = service["tests"]["per_test_bytes"].as_f64().unwrap() / MIB;
    assert!((2.0..4.0).contains(&per_test), "{service}");
    assert!(
        service["tests"]["count"].as_u64().unwrap() >= 45,
        "{service}"
    );
    assert_eq!(run.leaks().len(), 1, "{:?}", run.leaks());

    // 100 MiB used and released in each test: not a leak.
    let run = shell("20MiB", Some("use 100MiB"), 60, None, &[]);
    assert_eq!(run.out.status.code(), Some(0), "{}", run.said());
    let service = run.process("leak-sim", "serve");
    assert_eq!(service["verdict"], "ok", "{service}");
    assert!(
        service["peak_bytes"].as_f64().unwrap() >= 100.0 * MIB,
        "{service}"
    );
}
