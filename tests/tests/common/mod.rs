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

/// A shell "suite" of `tests` tests (phases written as the README shows) around a service
/// (`leak-sim serve`, holding `base`) started in its first test, `test_start`: each test sends
/// the service `command` (`keep 3MiB`, `use 100MiB`), then `wait 30ms`, and waits for each
/// answer; `also` runs as
/// one more test, `test_also`. The FIFOs are made here, in `dir`, so the script runs nothing
/// but the simulators: every process of the recording is one the test knows.
pub fn service_suite(
    dir: &Path,
    base: &str,
    command: Option<&str>,
    tests: usize,
    also: Option<&str>,
) -> String {
    let (req, ack) = (dir.join("req"), dir.join("ack"));
    for f in [&req, &ack] {
        let _ = std::fs::remove_file(f);
        nix::unistd::mkfifo(f, nix::sys::stat::Mode::S_IRWXU).expect("making a FIFO");
    }
    let sim = leak_sim();
    // Each test lasts 30 ms on the service's clock: a shell has no sleep of its own.
    let each = command.map_or(String::new(), |c| {
        format!("echo \"{c}\" >&3; read -r answer <&4; ")
    }) + "echo \"wait 30ms\" >&3; read -r answer <&4";
    let also = also.map_or(String::new(), |c| {
        format!(
            "echo \"begin test_also\" > \"$MEMTOOLS_PHASES\"\n{c}\necho \"end test_also\" > \"$MEMTOOLS_PHASES\""
        )
    });
    format!(
        r#"set -e
echo "begin test_start" > "$MEMTOOLS_PHASES"
{sim} serve --base {base} --duration 60s < "{req}" > "{ack}" &
exec 3> "{req}" 4< "{ack}"
read -r answer <&4
echo "end test_start" > "$MEMTOOLS_PHASES"
i=0
while [ $i -lt {tests} ]; do
  echo "begin test_$i" > "$MEMTOOLS_PHASES"
  {each}
  echo "end test_$i" > "$MEMTOOLS_PHASES"
  i=$((i + 1))
done
{also}
exec 3>&-
wait
"#,
        req = req.display(),
        ack = ack.display(),
    )
}
