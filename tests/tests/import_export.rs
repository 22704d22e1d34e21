//! memorytools' CSV in and out, and JSON lines out, through the command line.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::TestStore;

fn vlt(file: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/memorytools-vlt");
    assert!(
        dir.is_dir(),
        "the VLT recordings are missing: expected them in {} (shared/ beside the repository)",
        dir.display()
    );
    dir.join(file)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every row of every table, in order: to tell whether a store changed at all.
fn dump(store: &TestStore) -> Vec<String> {
    let sql = store.sql();
    let mut rows = Vec::new();
    for table in ["sessions", "processes", "samples"] {
        let mut stmt = sql
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
            .unwrap();
        let n = stmt.column_count();
        let mut q = stmt.query([]).unwrap();
        while let Some(r) = q.next().unwrap() {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            rows.push(format!("{table}: {}", cells.join("|")));
        }
    }
    rows
}

#[test]
fn every_vlt_recording_imports_with_exact_counts() {
    // (file, processes, samples) as the recordings' README gives them.
    let expected = [
        ("tdcsarv-dt0.5s-rev377208.csv.gz", 22, 182_268),
        ("tdcsarv-dt0.5s-rev382396.csv.gz", 26, 180_947),
        ("tdcsarv-dt0.5s-rev387927.csv.gz", 27, 171_774),
        ("tdcsarv-1s-rev377208.csv.gz", 24, 3_692),
        ("tdcsarv-1s-rev382396.csv.gz", 23, 3_788),
        ("tdcsarv-1s-rev387927.csv.gz", 25, 3_645),
        ("tdcstst-continuous.csv.gz", 145, 26_252),
    ];
    let store = TestStore::new();
    let files: Vec<String> = expected
        .iter()
        .map(|(f, ..)| vlt(f).display().to_string())
        .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let out = store.ok(&args);
    assert_eq!(out.lines().count(), expected.len(), "{out}");

    let sessions = store.sessions();
    for (file, processes, samples) in expected {
        let s = sessions
            .iter()
            .find(|s| s["source"].as_str().is_some_and(|p| p.ends_with(file)))
            .unwrap_or_else(|| panic!("no session for {file}"));
        assert_eq!(s["processes"], processes, "{file}");
        assert_eq!(s["samples"], samples, "{file}");
        assert_eq!(s["backend"], "import:memorytools");
        assert_eq!(s["metric"], "vm_size");
        // The data rows of the file itself, counted independently.
        let rows = gunzip(&vlt(file))
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            - 1;
        assert_eq!(rows, samples as usize, "{file}");
        let id = s["id"].as_i64().unwrap();
        assert!(out.contains(&format!(
            "as session {id}: {processes} processes, {samples} samples"
        )));
    }
}

#[test]
fn csv_export_gives_back_memorytools_bytes_and_json_lines_every_sample() {
    let store = TestStore::new();
    let file = vlt("tdcsarv-1s-rev377208.csv.gz");
    store.ok(&["import", file.to_str().unwrap()]);
    let csv = store.dir.path().join("out.csv");
    store.ok(&["export", "--format", "csv", "-o", csv.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&csv).unwrap(),
        gunzip(&file),
        "round trip changed the file"
    );

    let json = store.ok(&["export", "--session", "latest", "--format", "json"]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3_692);
    let first = &lines[0];
    assert_eq!(first["pid"], 400769);
    assert_eq!(first["name"], "ccsScheduler1");
    assert_eq!(first["time"], "2024-04-26T12:43:30.260145Z");
    assert_eq!(first["vm_size"], 5705728);
    for metric in ["rss_anon", "rss_file", "rss_shmem", "swap", "page_faults"] {
        assert!(
            first[metric].is_null(),
            "{metric} should be absent: {first}"
        );
    }
}

#[test]
fn malformed_files_are_rejected_with_file_line_and_field_and_the_store_is_unchanged() {
    let store = TestStore::new();
    store.ok(&[
        "import",
        vlt("tdcsarv-1s-rev382396.csv.gz").to_str().unwrap(),
    ]);
    let before = dump(&store);
    let header = "Process ID,Process Name,Time,Memory Usage\n";
    let good = "1,a,2024-04-25 16:08:25.210648,4096\n";
    let cases: [(&str, String, &str); 7] = [
        (
            "missing-column.csv",
            "Process ID,Process Name,Time\n1,a,2024-04-25 16:08:25.210648\n".to_string(),
            ":1: field `Memory Usage`: missing column",
        ),
        (
            "bad-number.csv",
            format!(
                "{header}{good}1,a,2024-04-25 16:08:25.5,8192\n1,a,2024-04-25 16:08:26.0,12k\n"
            ),
            ":4: field `Memory Usage`: `12k` is not a number of bytes",
        ),
        (
            "bad-time.csv",
            format!("{header}{good}1,a,yesterday at noon,4096\n"),
            ":3: field `Time`: `yesterday at noon` is not a time",
        ),
        (
            "bad-pid.csv",
            format!("{header}x1,a,2024-04-25 16:08:25.210648,4096\n"),
            ":2: field `Process ID`: `x1` is not a process id",
        ),
        (
            "short-row.csv",
            format!("{header}{good}1,a,2024-04-25 16:08:27\n"),
            ":3: 3 fields where the header has 4",
        ),
        (
            "header-only.csv",
            header.to_string(),
            ":1: no samples after the header",
        ),
        (
            "duplicate.csv",
            format!("{header}{good}{good}"),
            ":3: a second sample of pid 1 at the same time",
        ),
    ];
    for (name, content, message) in cases {
        let path = store.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let out = store.run(&["import", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}{message}", path.display())),
            "{name}: expected `{message}` in: {stderr}"
        );
        assert_eq!(dump(&store), before, "{name} changed the store");
    }

    // All or nothing: a good file before a bad one does not land either, and the exit says so.
    let ok = store.dir.path().join("ok.csv");
    std::fs::write(&ok, format!("{header}{good}")).unwrap();
    let bad = store.dir.path().join("bad-time.csv");
    let out = store.run(&["import", ok.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was imported"));
    assert_eq!(dump(&store), before);

    let missing = store.run(&["import", "/nonexistent/file.csv"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/file.csv"));
}

#[test]
fn the_store_comes_from_the_flag_the_environment_or_the_current_directory() {
    let store = TestStore::new();
    let csv = store.dir.path().join("one.csv");
    std::fs::write(
        &csv,
        "Process ID,Process Name,Time,Memory Usage\n1,a,2024-04-25 16:08:25.2,4096\n",
    )
    .unwrap();
    // MEMTOOLS_STORE (set by TestStore) ...
    store.ok(&["import", csv.to_str().unwrap()]);
    assert!(store.path().exists());
    // ... --store over it ...
    let other = store.dir.path().join("other.db");
    store.ok(&[
        "import",
        "--store",
        other.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    assert!(other.exists());
    // ... and memtools.db in the current directory without either.
    let cwd = store.dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let out = std::process::Command::new(common::memtools_user())
        .args(["import", csv.to_str().unwrap()])
        .env_remove("MEMTOOLS_STORE")
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(cwd.join("memtools.db").exists());
}

#[test]
fn reading_commands_on_a_missing_or_empty_store_say_so() {
    let store = TestStore::new();
    let out = store.run(&["sessions"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such store"));
    assert!(
        !store.path().exists(),
        "a reading command must not create a store"
    );
    let csv = store.dir.path().join("x.csv");
    std::fs::write(
        &csv,
        "Process ID,Process Name,Time,Memory Usage\n1,a,2024-04-25 16:08:25.2,4096\n",
    )
    .unwrap();
    store.ok(&["import", csv.to_str().unwrap()]);
    let out = store.run(&["show", "--session", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session with id 7"));
}
