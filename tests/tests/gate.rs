//! `record --fail-on-leak --report ...`: memtools as a CI gate around a test command.

mod common;

use std::path::Path;

use common::{TestStore, leak_sim, service_suite};

/// A "test suite" of three processes of which exactly one leaks: a shell running 30 tests, a
/// flat simulator beside them, and a service keeping 1 MiB after each test.
fn suite(dir: &Path, exit_code: u8) -> String {
    let sim = leak_sim();
    let tests = service_suite(dir, "4MiB", Some("keep 1MiB"), 30, None);
    format!("{sim} flat --base 4MiB --duration 3s &\n{tests}\nexit {exit_code}")
}

#[test]
fn a_leaking_suite_exits_3_with_one_junit_failure_naming_the_process() {
    let store = TestStore::new();
    let junit = store.dir.path().join("leaks.xml");
    let md = store.dir.path().join("summary.md");
    let json = store.dir.path().join("leaks.json");
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "20ms",
        "--fail-on-leak",
        "--report",
        &format!("junit:{}", junit.display()),
        "--report",
        &format!("markdown:{}", md.display()),
        "--report",
        &format!("json:{}", json.display()),
        "--",
        "sh",
        "-c",
        &suite(store.dir.path(), 0),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("LEAK"),
        "the verdicts are printed: {stderr}"
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert_eq!(xml.matches("<testcase").count(), 3, "{xml}");
    let failing = xml
        .split("<testcase")
        .find(|case| case.contains("<failure"))
        .unwrap();
    assert!(failing.contains("name=\"leak-sim (pid"), "{failing}");
    assert!(
        failing.contains("grew"),
        "the evidence is in the failure: {failing}"
    );

    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(
        summary.starts_with("## memtools: 1 leak in `sh -c"),
        "{summary}"
    );
    assert!(summary.contains("**leak-sim**"), "{summary}");
    let plots = md.with_extension("plots");
    let svg = std::fs::read_dir(&plots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    assert!(summary.contains(&format!(
        "(summary.plots/{})",
        svg.file_name().unwrap().to_string_lossy()
    )));

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["leaks"], 1);
}

#[test]
fn a_clean_suite_exits_0() {
    let store = TestStore::new();
    let sim = leak_sim();
    let out = store.run(&[
        "record",
        "--interval",
        "50ms",
        "--fail-on-leak",
        "--",
        sim,
        "flat",
        "--base",
        "8MiB",
        "--duration",
        "3s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("0 leaks"), "{stderr}");
}

#[test]
fn a_failing_command_keeps_its_own_exit_status_even_when_it_leaks() {
    let store = TestStore::new();
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "20ms",
        "--fail-on-leak",
        "--",
        "sh",
        "-c",
        &suite(store.dir.path(), 7),
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_reports_are_refused_before_anything_is_recorded() {
    let store = TestStore::new();
    let out = store.run(&["record", "--report", "html:x.html", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown report format `html`"));
    let out = store.run(&[
        "record",
        "--report",
        "junit:/nonexistent/dir/x.xml",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the junit:/nonexistent/dir/x.xml report"),
        "{stderr}"
    );
    assert!(!store.path().exists(), "nothing should have been recorded");
}

#[test]
fn a_baseline_run_reports_the_regression() {
    let store = TestStore::new();
    // The same command line both times; the size comes from the environment.
    let script = format!("{} flat --base \"$SIZE\" --duration 2s", leak_sim());
    let run = |size: &str, extra: &[&str]| {
        // /proc: an eBPF load slowed by a busy machine starts recording after a 2 s command.
        let mut args = vec!["record", "--backend", "procfs", "--interval", "50ms"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        store.cmd(&args).env("SIZE", size).output().unwrap()
    };
    // No earlier passing run yet: said, and not a failure.
    let first = run("8MiB", &["--fail-on-leak", "--baseline", "latest-passing"]);
    assert_eq!(first.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&first.stderr).contains("no earlier passing run"));

    let junit = store.dir.path().join("j.xml");
    let spec = format!("junit:{}", junit.display());
    let second = run(
        "72MiB",
        &[
            "--fail-on-leak",
            "--baseline",
            "latest-passing",
            "--report",
            &spec,
        ],
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("compared with session 1: 1 regression"),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("leak-sim peak"))
        .unwrap();
    assert!(line.contains("-> 7"), "{line}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("leak-sim against session 1"), "{xml}");
    assert!(xml.contains("type=\"memory-regression\""), "{xml}");

    // A baseline that does not exist is refused before anything is recorded.
    let before = store.sessions().len();
    let missing = run("8MiB", &["--baseline", "99"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no session with id 99"));
    assert_eq!(store.sessions().len(), before);
}
