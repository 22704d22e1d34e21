//! `memtools-user detect` end to end: real recordings and the simulator.

mod common;

use std::path::{Path, PathBuf};

use common::{TestStore, leak_sim, service_suite};
use serde_json::Value;

fn vlt(file: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/memorytools-vlt");
    assert!(
        dir.is_dir(),
        "the VLT recordings are missing from {}",
        dir.display()
    );
    dir.join(file)
}

fn detect_json(store: &TestStore, session: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["detect", "--session", session, "--format", "json"];
    args.extend_from_slice(extra);
    let out = store.run(&args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "detect printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

fn leaks(report: &Value) -> Vec<String> {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["verdict"] == "leak")
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_vlt_leak_is_found_and_the_fixed_revisions_are_clean() {
    let store = TestStore::new();
    for f in [
        "tdcsarv-dt0.5s-rev377208.csv.gz",
        "tdcsarv-1s-rev377208.csv.gz",
        "tdcsarv-dt0.5s-rev382396.csv.gz",
        "tdcsarv-1s-rev387927.csv.gz",
    ] {
        store.ok(&["import", vlt(f).to_str().unwrap()]);
    }
    for (session, leaking) in [("1", true), ("2", true), ("3", false), ("4", false)] {
        let (code, report) = detect_json(&store, session, &["--fail-on-leak"]);
        assert_eq!(report["metric"], "vm_size");
        assert_eq!(report["session"]["id"], session.parse::<i64>().unwrap());
        if leaking {
            assert_eq!(code, Some(3), "session {session}");
            assert_eq!(leaks(&report), vec!["tdcsarvControl"], "session {session}");
            // The long-lived one, with its evidence.
            let p = &report["processes"][0];
            assert!(p["samples"].as_u64().unwrap() > 200);
            assert!(p["slope_bytes_per_s"].as_f64().unwrap() > 1e6);
            assert!(p["growth_bytes"].as_f64().unwrap() > 1e9);
            assert!(p["window_end_ns"].as_i64() > p["window_start_ns"].as_i64());
            assert!(p["reason"].as_str().unwrap().contains("grew"));
        } else {
            assert_eq!(code, Some(0), "session {session}: {:?}", leaks(&report));
            assert!(leaks(&report).is_empty());
        }
        for p in report["processes"].as_array().unwrap() {
            for field in [
                "pid",
                "name",
                "samples",
                "verdict",
                "reason",
                "limit_source",
                "peak_bytes",
            ] {
                assert!(!p[field].is_null(), "{field} missing in {p}");
            }
        }
    }
    let text = store.ok(&["detect", "--session", "1"]);
    assert!(text.contains("1 leak, "), "{text}");
    let first = text.lines().find(|l| l.contains("LEAK")).unwrap();
    assert!(
        first.contains("tdcsarvControl") && first.contains("steps of 64 MiB"),
        "{first}"
    );
    // Virtual size: no address-space limit was recorded, so no time to limit is claimed (a
    // 7.8 GiB virtual size is not "already at" any machine's memory).
    assert!(text.contains("limit: none"), "{text}");
    assert!(!text.contains("reaches the"), "{text}");
    let (_, report) = detect_json(&store, "1", &[]);
    assert!(report["processes"][0]["limit_bytes"].is_null());
    assert_eq!(report["processes"][0]["limit_source"], "none");
    assert!(report["processes"][0]["time_to_limit_s"].is_null());
    // With the address-space limit given, it is projected against that.
    let (_, report) = detect_json(&store, "1", &["--limit", "16GiB"]);
    assert!(report["processes"][0]["time_to_limit_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_recorded_leak_fails_the_gate_and_a_flat_process_passes() {
    let store = TestStore::new();
    let suite = service_suite(store.dir.path(), "8MiB", Some("keep 1MiB"), 30, None);
    // /proc: the analysis is under test, not the backend (an eBPF load slowed by a busy
    // machine would start recording after a short command has already run).
    store.ok(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "20ms",
        "--",
        "sh",
        "-c",
        &suite,
    ]);
    let (code, report) = detect_json(&store, "latest", &["--fail-on-leak"]);
    assert_eq!(code, Some(3));
    assert_eq!(report["metric"], "rss");
    assert_eq!(leaks(&report), vec!["leak-sim"]);
    // Peaks: a budget over the service's peak passes, one under it fails, by name too.
    let (code, report) = detect_json(&store, "latest", &["--fail-on-peak", "1GiB"]);
    assert_eq!(code, Some(0));
    assert_eq!(report["over_budget"], 0);
    let (code, report) = detect_json(&store, "latest", &["--fail-on-peak", "leak-sim=20MiB"]);
    assert_eq!(code, Some(3));
    assert_eq!(report["over_budget"], 1);
    let out = store.run(&["detect", "--fail-on-peak", "=1GiB"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a name goes before the `=`"));

    store.ok(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "50ms",
        "--",
        leak_sim(),
        "flat",
        "--base",
        "16MiB",
        "--duration",
        "4s",
    ]);
    let (code, report) = detect_json(&store, "latest", &["--fail-on-leak"]);
    assert_eq!(code, Some(0));
    assert_eq!(report["processes"][0]["verdict"], "ok");
    // Without --fail-on-leak a leak is reported, not an error; peaks are in the table.
    let out = store.run(&["detect", "--session", "1"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("peak"));
}

#[test]
fn parameters_reach_the_pipeline() {
    let store = TestStore::new();
    store.ok(&[
        "import",
        vlt("tdcsarv-dt0.5s-rev377208.csv.gz").to_str().unwrap(),
    ]);
    // A limit far away and a short critical time: LBR alone no longer flags it.
    let (_, report) = detect_json(
        &store,
        "latest",
        &[
            "--algo",
            "lbr",
            "--limit",
            "1000TiB",
            "--critical-time",
            "1s",
        ],
    );
    assert!(leaks(&report).is_empty(), "{:?}", leaks(&report));
    assert_eq!(report["params"]["algo"], "lbr");
    assert_eq!(report["processes"][0]["limit_bytes"], 1000u64 << 40);
    assert_eq!(report["processes"][0]["limit_source"], "given");
    // Too large a minimum window: everything is insufficient, never silently ok.
    let (_, report) = detect_json(&store, "latest", &["--min-window", "100000"]);
    for p in report["processes"].as_array().unwrap() {
        assert_eq!(p["verdict"], "insufficient", "{p}");
    }
    for bad in [["--algo", "magic"], ["--limit", "lots"], ["--r2", "x"]] {
        let out = store.run(&["detect", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(bad[1]));
    }
}
