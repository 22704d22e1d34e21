//! Fault suite, the files memtools writes: run as root in a directory another user can write,
//! a link planted at a report, its plot directory or an export is refused, never followed, and
//! the recording is kept.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::{TestStore, service_suite};

const PRECIOUS: &str = "a file root must not overwrite\n";

/// `record -- sh -c SCRIPT` in the store's directory, with the given reports.
fn record_in(store: &TestStore, reports: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["record", "--backend", "procfs", "--interval", "20ms"];
    for r in reports {
        args.extend(["--report", r]);
    }
    args.extend(["--", "sh", "-c", script]);
    store
        .cmd(&args)
        .current_dir(store.dir.path())
        .output()
        .expect("running memtools-user")
}

/// A suite of 30 tests around a service keeping 1 MiB after each: a leak, so the Markdown
/// report writes a plot (the FIFOs it talks over are made in `dir`).
fn leaking_script(dir: &Path) -> String {
    service_suite(dir, "4MiB", Some("keep 1MiB"), 30, None)
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| d.count() == 0)
        .unwrap_or(false)
}

#[test]
fn links_planted_at_report_paths_are_refused_before_anything_starts() {
    let store = TestStore::new();
    let dir = store.dir.path();
    let victim = dir.join("victim");
    std::fs::write(&victim, PRECIOUS).unwrap();
    symlink(&victim, dir.join("leaks.md")).unwrap();
    symlink(&victim, dir.join("leaks.xml")).unwrap();
    for (report, name) in [
        ("markdown:leaks.md", "leaks.md"),
        ("junit:leaks.xml", "leaks.xml"),
    ] {
        let out = record_in(&store, &[report], "touch started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(name) && stderr.contains("symbolic link"),
            "{stderr}"
        );
        assert!(!dir.join("started").exists(), "the command ran");
    }
    // A link where the Markdown report's plots go.
    std::fs::remove_file(dir.join("leaks.md")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), dir.join("leaks.plots")).unwrap();
    let out = record_in(&store, &["markdown:leaks.md"], "touch started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("leaks.plots"), "{stderr}");
    assert!(!dir.join("started").exists(), "the command ran");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), PRECIOUS);
    assert!(is_empty_dir(elsewhere.path()));
}

#[test]
fn a_link_planted_while_recording_is_refused_and_the_recording_kept() {
    // The command under test plants the links, after the paths were checked: what a local
    // user racing a root CI job would do.
    for (planted, named) in [("leaks.md", "leaks.md"), ("leaks.plots", "leaks.plots")] {
        let store = TestStore::new();
        let dir = store.dir.path();
        let victim = dir.join("victim");
        std::fs::write(&victim, PRECIOUS).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = if planted == "leaks.plots" {
            elsewhere.path().to_path_buf()
        } else {
            victim.clone()
        };
        let script = format!(
            "ln -sfn '{}' {planted} && {}",
            target.display(),
            leaking_script(dir)
        );
        let out = record_in(&store, &["markdown:leaks.md", "junit:leaks.xml"], &script);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{planted}: {stderr}");
        assert!(
            stderr.contains(named) && stderr.contains("symbolic link"),
            "{planted}: {stderr}"
        );
        assert!(stderr.contains("is stored"), "{planted}: {stderr}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), PRECIOUS);
        assert!(
            is_empty_dir(elsewhere.path()),
            "{planted}: a plot went through the link"
        );
        // The other report is written whole, and the session is kept.
        let xml = std::fs::read_to_string(dir.join("leaks.xml")).unwrap();
        assert!(xml.contains("<testsuite"), "{xml}");
        let sessions = store.sessions();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0]["state"], "finished");
        // Nothing half-written or temporary is left beside the reports.
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with(".tmp")),
            "{planted}: {names:?}"
        );
    }
}

#[test]
fn exports_refuse_links_and_non_files_and_replace_a_file_whole() {
    let store = TestStore::new();
    let dir = store.dir.path();
    let out = record_in(&store, &[], "sleep 0.3");
    assert!(out.status.success());
    let victim = dir.join("victim");
    std::fs::write(&victim, PRECIOUS).unwrap();
    symlink(&victim, dir.join("samples.csv")).unwrap();
    for format in ["csv", "json"] {
        let link = dir.join("samples.csv");
        let out = store.run(&["export", "--format", format, "-o", link.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("samples.csv"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), PRECIOUS);
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let out = store.run(&["export", "--format", "csv", "-o", sub.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));

    // A regular file is replaced by a new one: a hard link to the old one keeps its bytes.
    let real = dir.join("real.csv");
    std::fs::write(&real, PRECIOUS).unwrap();
    std::fs::hard_link(&real, dir.join("other-name")).unwrap();
    store.ok(&["export", "--format", "csv", "-o", real.to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .starts_with("Process ID,")
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("other-name")).unwrap(),
        PRECIOUS
    );
}
