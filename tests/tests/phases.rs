//! Phases: a test harness marks its tests through `$MEMTOOLS_PHASES`, and a leak is attributed
//! to the tests during which the memory grew. The recordings here use the /proc backend: what
//! is under test is the phase protocol and the attribution, the same for either backend, and
//! polling every 50 ms gives the analysis the same dense history on a loaded machine.

mod common;

use std::path::Path;

use common::{TestStore, service_suite};
use serde_json::Value;

fn json_report(store: &TestStore, path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    let _ = store;
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_leak_is_attributed_to_the_phase_it_grew_in() {
    let store = TestStore::new();
    let report = store.dir.path().join("report.json");
    // A shell "suite": a line that is not the protocol (said, and the recording goes on), then
    // 30 tests during which a service keeps 1 MiB each, and a last one during which it keeps
    // 40 MiB at once.
    let tests = service_suite(store.dir.path(), "4MiB", Some("keep 1MiB"), 30, None);
    let script = format!(
        "echo \"bogus line\" > \"$MEMTOOLS_PHASES\"\n{}",
        tests.replace(
            "exec 3>&-",
            "echo \"begin test_big\" > \"$MEMTOOLS_PHASES\"\necho \"keep 40MiB\" >&3; read -r answer <&4\necho \"wait 100ms\" >&3; read -r answer <&4\necho \"end test_big\" > \"$MEMTOOLS_PHASES\"\nexec 3>&-"
        )
    );
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "20ms",
        "--fail-on-leak",
        "--report",
        &format!("json:{}", report.display()),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("ignored phase lines"), "{stderr}");
    assert!(stderr.contains("`bogus line`"), "{stderr}");
    assert!(stderr.contains("grew most during test_big"), "{stderr}");

    let r = json_report(&store, &report);
    let names: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 32, "{names:?}");
    assert_eq!(
        (names[0], names[1], names[31]),
        ("test_start", "test_0", "test_big")
    );
    let leak = &r["processes"][0];
    assert_eq!(leak["verdict"], "leak");
    assert_eq!(leak["name"], "leak-sim");
    assert_eq!(leak["grew_during"][0]["name"], "test_big");
    // Most of its 40 MiB (the recorder looks every 20 ms; a busy machine stretches that).
    assert!(leak["grew_during"][0]["growth_bytes"].as_f64().unwrap() > 10.0 * 1048576.0);

    let show = store.ok(&["show"]);
    assert!(
        show.contains("test_start") && show.contains("test_big"),
        "{show}"
    );
}

#[test]
fn the_pytest_plugin_marks_each_test_in_a_real_pytest_run() {
    let has_pytest = std::process::Command::new("python3")
        .args(["-c", "import pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_pytest,
        "pytest is missing: `cargo xtask setup` installs it (python3 -m pip install pytest)"
    );
    let store = TestStore::new();
    let suite = store.dir.path().join("test_suite.py");
    std::fs::write(
        &suite,
        r#"import time

import pytest

kept = []


def test_quiet():
    time.sleep(0.2)


@pytest.mark.parametrize("i", range(20))
def test_leaky(i):
    kept.append(b"x" * (2 << 20))
    time.sleep(0.02)
"#,
    )
    .unwrap();
    let report = store.dir.path().join("report.json");
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib");
    let out = store
        .cmd(&[
            "record",
            "--backend",
            "procfs",
            "--interval",
            "50ms",
            "--fail-on-leak",
            "--report",
            &format!("json:{}", report.display()),
            "--",
            "python3",
            "-m",
            "pytest",
            "-q",
            "-p",
            "pytest_memtools",
            "-p",
            "no:cacheprovider",
            suite.to_str().unwrap(),
        ])
        .env("PYTHONPATH", &contrib)
        .current_dir(store.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("21 passed"),
        "pytest output: {stdout}{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    let r = json_report(&store, &report);
    let names: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 21);
    assert_eq!(
        (names[0], names[1], names[20]),
        (
            "test_suite.py::test_quiet",
            "test_suite.py::test_leaky[0]",
            "test_suite.py::test_leaky[19]"
        )
    );
    assert!(
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["end"].is_i64())
    );
    let leak = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["verdict"] == "leak")
        .unwrap_or_else(|| panic!("no leak found: {r}"));
    assert!(
        leak["grew_during"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("test_suite.py::test_leaky["),
        "{leak}"
    );
    // About 2 MiB a test (the recorder's look at each test's end can be a tick late).
    let per_test = leak["tests"]["per_test_bytes"].as_f64().unwrap() / 1048576.0;
    assert!((1.0..3.0).contains(&per_test), "{leak}");
}
