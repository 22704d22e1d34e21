//! What the end-to-end tests share: the binaries under test, stores in temporary directories,
//! and root detection for the tests that need it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `memtools-user` binary, built once per test run in the workspace's target directory.
pub fn memtools_user() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        escargot::CargoBuild::new()
            .package("memtools-user")
            .bin("memtools-user")
            .manifest_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .run()
            .expect("building memtools-user")
            .path()
            .to_path_buf()
    })
}

/// The leak simulator.
pub fn leak_sim() -> &'static str {
    env!("CARGO_BIN_EXE_leak-sim")
}

/// A temporary directory holding a store.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("memtools.db")
    }

    /// `memtools-user ARGS` with this store given by MEMTOOLS_STORE.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(memtools_user());
        c.args(args).env("MEMTOOLS_STORE", self.path());
        c
    }

    /// Runs `memtools-user ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running memtools-user")
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "memtools-user {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sessions --format json`, parsed.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["sessions", "--format", "json"]);
        match serde_json::from_str(&out).expect("sessions JSON") {
            serde_json::Value::Array(a) => a,
            other => panic!("sessions JSON is not an array: {other}"),
        }
    }

    /// Opens the store directly, read-only, to check what is in it.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("opening the store")
    }
}

/// Whether we run as root; tests that need it say loudly when they skip.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Prints a skip notice that shows in test output even without --nocapture.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// Kills a process left behind by a test (a simulator orphaned by a killed recorder).
pub fn kill_pid_file(path: &Path) {
    if let Ok(pid) = std::fs::read_to_string(path)
        && let Ok(pid) = pid.trim().parse::<i32>()
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
