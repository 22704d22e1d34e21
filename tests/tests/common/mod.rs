//! What the end-to-end tests share: the binaries under test, stores in temporary directories,
//! and root detection for the tests that need it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `memtools-user` binary, built once per test run in the workspace's target directory;
/// `MEMTOOLS_USER_BIN` runs the tests against another build (the fault suite against an older
/// one, to see each case fail there).
pub fn memtools_user() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("MEMTOOLS_USER_BIN") {
            return PathBuf::from(bin);
        }
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

/// The unprivileged user readers are tried as (nobody).
pub const NOBODY: u32 = 65534;

/// Makes `cmd` run as uid and gid 65534 with no supplementary groups (the caller is root).
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setgroups, setgid and setuid are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Whether a process is alive (a zombie waiting to be reaped is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Waits up to `within` for every pid to be gone; returns those still alive.
pub fn wait_gone(pids: &[u32], within: std::time::Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The pids written one per line to a file (by a test's shell script).
pub fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A mount made for a test (a small tmpfs, a read-only bind), unmounted when dropped.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    fn run_mount(args: &[&str], dir: &Path) -> Mount {
        let status = Command::new("mount")
            .args(args)
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(status.success(), "mount {args:?} {} failed", dir.display());
        Mount {
            dir: dir.to_path_buf(),
        }
    }

    /// A tmpfs of `size` (like `1m`) at `dir` (root only).
    pub fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).expect("mount point");
        Mount::run_mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ],
            dir,
        )
    }

    /// `source` again at `dir`, read-only (root only).
    pub fn read_only(source: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).expect("mount point");
        let m = Mount::run_mount(&["--bind", source.to_str().expect("utf-8 path")], dir);
        let status = Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(status.success(), "remount read-only failed");
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A small seeded generator (xorshift64*), so a fault test's random moments can be replayed:
/// the seed is printed, and `MEMTOOLS_FAULT_SEED` sets it.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(default: u64) -> Rng {
        let seed = std::env::var("MEMTOOLS_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("fault seed {seed} (set MEMTOOLS_FAULT_SEED to replay)");
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Wall-clock nanoseconds, as the store keeps time.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The files in a directory with their bytes, sorted: to show a command changed nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct DirState(pub Vec<(String, Vec<u8>)>);

impl DirState {
    /// The file names.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Whether a file of this name is there and not empty.
    pub fn has_nonempty(&self, name: &str) -> bool {
        self.0.iter().any(|(n, b)| n == name && !b.is_empty())
    }
}

/// Names and sizes with a checksum, not the bytes: a failing comparison stays readable.
impl std::fmt::Debug for DirState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sum = |b: &[u8]| {
            b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
                (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
            })
        };
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|(n, b)| format!("{n} ({} bytes, {:016x})", b.len(), sum(b))),
            )
            .finish()
    }
}

/// The files in a directory with their bytes.
pub fn dir_snapshot(dir: &Path) -> DirState {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("listing a directory")
        .map(|e| {
            let e = e.expect("a directory entry");
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    DirState(files)
}

/// `sessions --format json`'s output, parsed; the command must have succeeded.
pub fn sessions_json(out: Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "sessions failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sessions JSON")
}

/// SIGKILL to each of these processes (what a failing test must not leave behind).
pub fn kill_all(pids: &[u32]) {
    for &p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
