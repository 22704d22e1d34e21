//! Fault suite, bad input: a database that is not a store, endless or huge import files, a
//! bad file among good ones, parameters out of range, absurd values, an endless phase line.
//! Each gets a clear error or the right reading, bounded memory, and loses nothing stored.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use common::{TestStore, dir_snapshot};

fn vlt(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/memorytools-vlt")
        .join(file)
}

const HEADER: &str = "Process ID,Process Name,Time,Memory Usage\n";

#[test]
fn a_database_that_is_not_a_store_is_refused_by_every_command_without_a_byte_changed() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("invoices.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices (total) VALUES (12.5), (99.0);",
    )
    .unwrap();
    drop(conn);
    let good = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        good.path(),
        format!("{HEADER}1,a,2024-04-25 16:08:25,4096\n"),
    )
    .unwrap();
    let before = dir_snapshot(dir.path());
    let good = good.path().to_str().unwrap().to_string();
    let commands: [&[&str]; 6] = [
        &["sessions"],
        &["show"],
        &["detect"],
        &["export", "--format", "csv"],
        &["import", &good],
        &["record", "--backend", "procfs", "--", "true"],
    ];
    for args in commands {
        let out = std::process::Command::new(common::memtools_user())
            .args(args)
            .env("MEMTOOLS_STORE", &foreign)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("not a memtools store"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            dir_snapshot(dir.path()),
            before,
            "{args:?} changed the database or left a file beside it"
        );
    }
}

/// Runs `memtools-user import FILE` with its address space capped, so unbounded reading ends
/// in a failed allocation rather than the machine's memory.
fn import_capped(store: &TestStore, file: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = store.cmd(&["import", file]);
    // SAFETY: setrlimit is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // A safety net: an import that never ends is killed (and fails the test).
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().unwrap();
    drop(guard);
    out
}

#[test]
fn import_keeps_memory_bounded_whatever_the_input() {
    let store = TestStore::new();
    store.ok(&[
        "import",
        vlt("tdcsarv-1s-rev382396.csv.gz").to_str().unwrap(),
    ]);
    let before = store.sessions();
    // One endless line; the same, compressed (a gzip bomb); a CSV with one 2 MiB row.
    let bomb = store.dir.path().join("bomb.csv.gz");
    {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&bomb).unwrap(),
            flate2::Compression::best(),
        );
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..2048 {
            gz.write_all(&zeros).unwrap();
        }
        gz.finish().unwrap();
    }
    let long = store.dir.path().join("long.csv");
    std::fs::write(
        &long,
        format!(
            "{HEADER}1,a,2024-04-25 16:08:25,4096\n2,{},2024-04-25 16:08:26,4096\n",
            "n".repeat(2 << 20)
        ),
    )
    .unwrap();
    for (file, line) in [
        ("/dev/zero".to_string(), 1),
        (bomb.display().to_string(), 1),
        (long.display().to_string(), 3),
    ] {
        let out = import_capped(&store, &file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(&format!("{file}:{line}: a row longer than 1 MiB")),
            "{file}: {stderr}"
        );
        assert_eq!(store.sessions(), before, "{file} changed the store");
    }
}

#[test]
fn one_bad_file_keeps_every_file_of_the_import_out() {
    let store = TestStore::new();
    store.ok(&[
        "import",
        vlt("tdcsarv-1s-rev382396.csv.gz").to_str().unwrap(),
    ]);
    let before = store.sessions();
    let bad = store.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!("{HEADER}1,a,2024-04-25 16:08:25,4096\n1,a,2024-04-25 16:08:26,12k\n"),
    )
    .unwrap();
    let out = store.run(&[
        "import",
        vlt("tdcsarv-1s-rev377208.csv.gz").to_str().unwrap(),
        vlt("tdcsarv-1s-rev387927.csv.gz").to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.csv:3: field `Memory Usage`"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(store.sessions(), before);
}

#[test]
fn parameters_out_of_range_are_refused_with_the_range_and_why() {
    let store = TestStore::new();
    store.ok(&[
        "import",
        vlt("tdcsarv-1s-rev382396.csv.gz").to_str().unwrap(),
    ]);
    let cases: [(&[&str], &str); 12] = [
        (&["detect", "--r2", "2"], "from 0 to 1"),
        (&["detect", "--r2", "NaN"], "from 0 to 1"),
        (&["detect", "--r2=-1"], "from 0 to 1"),
        (&["detect", "--min-window", "0"], "at least 3 points"),
        (&["detect", "--min-window", "2"], "at least 3 points"),
        (&["detect", "--critical-time", "0s"], "more than 0"),
        (&["detect", "--gap", "0s"], "more than 0"),
        (&["detect", "--limit", "0"], "more than 0 bytes"),
        (&["record", "--interval", "5ms", "--all"], "at least 10ms"),
        (&["record", "--interval", "2h", "--all"], "at most 1h"),
        (&["record", "--duration", "0s", "--all"], "more than 0"),
        (&["record", "--pid", "0"], "not a process id"),
    ];
    for (args, why) in cases {
        let out = store.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(why),
            "{args:?}: expected `{why}` in {stderr}"
        );
    }
    // None of the recordings started.
    assert_eq!(store.sessions().len(), 1);
}

#[test]
fn detect_json_says_the_limit_and_window_it_used() {
    let store = TestStore::new();
    store.ok(&[
        "import",
        vlt("tdcsarv-1s-rev382396.csv.gz").to_str().unwrap(),
    ]);
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["detect", "--format", "json"];
        args.extend(extra);
        serde_json::from_str(&store.ok(&args)).unwrap()
    };
    // Virtual size with no address-space limit recorded: nothing bounds it, and the JSON says
    // so rather than a limit that was not used.
    let report = json(&[]);
    assert_eq!(
        report["processes"][0]["limit_bytes"],
        serde_json::Value::Null
    );
    assert_eq!(report["params"]["limit_bytes"], serde_json::Value::Null);
    assert_eq!(report["params"]["limit_source"], "none");
    let report = json(&["--limit", "1GiB", "--min-window", "3"]);
    assert_eq!(report["params"]["limit_bytes"], 1u64 << 30);
    assert_eq!(report["params"]["limit_source"], "given");
    assert_eq!(report["params"]["min_window"], 3);
}

#[test]
fn a_10ms_interval_reads_as_10ms() {
    let store = TestStore::new();
    store.ok(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "10ms",
        "--",
        "sleep",
        "0.2",
    ]);
    let show = store.ok(&["show"]);
    assert!(show.contains("interval 10 ms"), "{show}");
    assert_eq!(store.sessions()[0]["interval_ms"], 10.0);
}

#[test]
fn growth_beyond_2_63_bytes_does_not_wrap_around() {
    let store = TestStore::new();
    let csv = store.dir.path().join("huge.csv");
    std::fs::write(
        &csv,
        format!(
            "{HEADER}1,up,2024-04-25 16:08:25,1000\n1,up,2024-04-25 16:08:26,{}\n2,down,2024-04-25 16:08:25,{}\n2,down,2024-04-25 16:08:26,1\n",
            (1u64 << 63) + 1000,
            u64::MAX
        ),
    )
    .unwrap();
    store.ok(&["import", csv.to_str().unwrap()]);
    let show = store.ok(&["show"]);
    let row = |name: &str| {
        show.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no {name} in {show}"))
            .to_string()
    };
    assert!(row("up").contains("+8 EiB"), "{show}");
    assert!(row("down").contains("-16 EiB"), "{show}");
}

#[test]
fn a_phase_line_without_end_never_holds_the_command_up() {
    // Five megabytes without a newline, then a good phase. Drained once a tick, the FIFO would
    // hold the writer until the recorder's next tick (10 s here); read as it comes, the line
    // after it arrives at once and is stamped on arrival.
    let store = TestStore::new();
    let script = r#"head -c 5000000 /dev/zero | tr '\0' x > "$MEMTOOLS_PHASES"; echo > "$MEMTOOLS_PHASES"; echo "begin after" > "$MEMTOOLS_PHASES"; echo "end after" > "$MEMTOOLS_PHASES""#;
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--interval",
        "10s",
        "--duration",
        "60s",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("(a line over 4096 bytes)"), "{stderr}");
    let after: i64 = store
        .sql()
        .query_row(
            "SELECT p.begin_ns - s.start_ns FROM phases p JOIN sessions s ON p.session_id = s.id WHERE p.name = 'after'",
            [],
            |r| r.get(0),
        )
        .expect("the phase after the long line");
    // Well before the first tick after the start.
    assert!(
        after < 5_000_000_000,
        "the writer waited {} ms for the recorder",
        after / 1_000_000
    );
}
