//! The exposition: every family with HELP and TYPE, label values escaped, the cardinality rules
//! applied, both formats, and `promtool check metrics` (the Debian package `prometheus`) happy
//! with the Prometheus text.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use memtools::model::{Metric, Metrics};
use memtools_exporter::encode::{Exposition, openmetrics, prometheus_text};
use memtools_exporter::snapshot::{AnalysisView, MetricVerdict, ProcessView, Snapshot};
use memtools_exporter::stats::RecorderView;

fn process(pid: u32, name: &str, mib: u64, leak: Option<bool>) -> ProcessView {
    ProcessView {
        pid,
        name: name.into(),
        latest: Metrics {
            rss_anon: Some(mib << 20),
            rss_file: Some(1 << 20),
            rss_shmem: Some(0),
            swap: Some(0),
            vm_size: Some(mib << 22),
            page_faults: Some(1234),
            ..Metrics::default()
        },
        verdicts: leak
            .map(|leak| MetricVerdict {
                metric: Metric::Rss,
                leak,
                slope_per_s: if leak { 4096.0 } else { 0.0 },
                time_to_limit_s: leak.then_some(7200.0),
            })
            .into_iter()
            .collect(),
    }
}

pub fn sample_snapshot() -> Snapshot {
    Snapshot {
        processes: vec![
            process(10, "leaky", 40, Some(true)),
            process(11, "steady", 30, Some(false)),
            process(12, "new", 20, None),
            process(13, "we\"ird\\name\nx", 1, None),
            process(14, "small", 2, Some(true)),
            process(15, "small", 3, Some(false)),
        ],
        recorder: RecorderView {
            session_id: Some(3),
            backend: "procfs".into(),
            samples_written: 1000,
            processes_followed: 6,
            events_lost: 0,
            last_drain: Duration::from_micros(1500),
            store_bytes: 1 << 20,
            samples_pruned: 10,
        },
        analysis: Some(AnalysisView {
            duration: Duration::from_millis(12),
            processes: 5,
        }),
        top: 2,
    }
}

#[test]
fn every_family_has_help_and_type_and_the_series_say_what_the_snapshot_holds() {
    let om = openmetrics(Arc::new(sample_snapshot()));
    println!("{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    // Every sample line belongs to a family announced with HELP and TYPE before it.
    let mut announced = Vec::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            announced.push(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                announced.last().is_some_and(|a| a == family || a == name),
                "{line} not under its family"
            );
            assert!(
                om.contains(&format!("# HELP {family} ")),
                "{family}: no help"
            );
        }
    }
    // Top 2 by size (10, 11) and by growth (10, 14): 10, 11, 14 one by one.
    for line in [
        "memtools_process_memory_bytes{pid=\"10\",name=\"leaky\",kind=\"rss\"} 42991616",
        "memtools_process_memory_bytes{pid=\"10\",name=\"leaky\",kind=\"anon\"} 41943040",
        "memtools_process_memory_bytes{pid=\"10\",name=\"leaky\",kind=\"vm\"} 167772160",
        "memtools_process_page_faults_total{pid=\"10\",name=\"leaky\"} 1234",
        "memtools_leak{pid=\"10\",name=\"leaky\",metric=\"rss\"} 1",
        "memtools_leak{pid=\"11\",name=\"steady\",metric=\"rss\"} 0",
        "memtools_leak{pid=\"14\",name=\"small\",metric=\"rss\"} 1",
        "memtools_growth_bytes_per_second{pid=\"10\",name=\"leaky\"} 4096.0",
        "memtools_time_to_limit_seconds{pid=\"10\",name=\"leaky\"} 7200.0",
        "memtools_exported_processes 3",
        "memtools_recorder_samples_written_total 1000",
        "memtools_recorder_drain_seconds 0.0015",
        "memtools_retention_pruned_samples_total 10",
        "memtools_analysis_processes 5",
        "memtools_recorder_info{backend=\"procfs\",version=\"0.1.0\"} 1",
    ] {
        assert!(om.contains(line), "missing `{line}` in\n{om}");
    }
    // No time to limit for an ok verdict; nothing at all for the insufficient one.
    assert!(!om.contains("memtools_time_to_limit_seconds{pid=\"11\""));
    // The rest by name, the odd name escaped, not breaking the line.
    for line in [
        "memtools_group_processes{name=\"small\"} 1",
        "memtools_group_processes{name=\"new\"} 1",
        "memtools_group_memory_bytes{name=\"new\",kind=\"rss\"} 22020096",
        "memtools_group_leaks{name=\"small\",metric=\"rss\"} 0",
        "memtools_group_processes{name=\"(other)\"} 1",
    ] {
        assert!(om.contains(line), "missing `{line}` in\n{om}");
    }
    assert!(
        !om.contains("pid=\"12\""),
        "12 is neither large nor growing"
    );
}

#[test]
fn an_odd_process_name_is_escaped() {
    let mut snap = sample_snapshot();
    snap.top = 10;
    let om = openmetrics(Arc::new(snap));
    assert!(
        om.contains(r#"name="we\"ird\\name\nx""#),
        "not escaped:\n{om}"
    );
}

#[test]
fn the_text_format_names_counters_with_their_total_and_has_no_eof() {
    let om = openmetrics(Arc::new(sample_snapshot()));
    let text = prometheus_text(&om);
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE memtools_recorder_samples_written_total counter\n"));
    assert!(
        text.contains("# HELP memtools_recorder_samples_written_total Samples the recorder wrote")
    );
    assert!(text.contains("# TYPE memtools_leak gauge\n"));
    assert_eq!(
        om.lines().filter(|l| !l.starts_with('#')).count(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
}

/// Runs promtool on `input`; None when promtool is missing (outside CI).
fn promtool(args: &[&str], input: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED promtool check: needs promtool (Debian package prometheus; cargo xtask setup installs it)"
            );
            return None;
        }
        Err(e) => panic!("promtool is missing in CI (cargo xtask setup installs it): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[test]
fn promtool_finds_nothing_to_say_about_the_exposition() {
    let mut snap = sample_snapshot();
    snap.top = 10;
    let exposition = Exposition::of(Arc::new(snap));
    let text = String::from_utf8(exposition.text.to_vec()).unwrap();
    if let Some((ok, said)) = promtool(&["check", "metrics"], &text) {
        assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");
    }
    // And an empty one (before the session begins).
    let empty = Exposition::of(Arc::new(Snapshot::default()));
    let text = String::from_utf8(empty.text.to_vec()).unwrap();
    if let Some((ok, said)) = promtool(&["check", "metrics"], &text) {
        assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");
    }
}
