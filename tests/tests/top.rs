//! The live view in a real terminal: `memtools-user top` and `record --live` run inside tmux
//! (installed by `cargo xtask setup`), their screens read with `tmux capture-pane` as a person
//! would read them, keys sent with `tmux send-keys`. Recordings use the /proc backend, so no
//! root is needed.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestStore, leak_sim, memtools_user};

/// A tmux server of our own (its own socket), with one window running a shell command.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (run by sh) in a `width` x `height` terminal with a UTF-8 locale.
    fn start(width: u16, height: u16, command: &str) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "memtools-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let tmux = Tmux { socket };
        let status = tmux
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "main"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .expect("tmux not found: `cargo xtask setup` installs it (Debian package tmux)");
        assert!(status.success(), "tmux new-session failed: {status}");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).env("LANG", "C.UTF-8");
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// What the terminal shows now.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "main"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the screen satisfies `done`; fails with the last screen after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// A recorder started in the background; killed (with its command) if the test ends early.
struct Recording(Child);

impl Recording {
    fn start(store: &TestStore, args: &[&str]) -> Recording {
        let child = store
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the recorder");
        Recording(child)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        // SIGTERM: the recorder stops its command and finishes the session.
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// The table line of the process named `name`, if the screen shows one.
fn line_of<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
}

#[test]
fn top_beside_a_recording_shows_the_leak_as_it_happens() {
    let store = TestStore::new();
    let _recording = Recording::start(
        &store,
        &[
            "record",
            "--backend",
            "procfs",
            "--interval",
            "100ms",
            "--",
            leak_sim(),
            "linear",
            "--step",
            "1MiB",
            "--every",
            "100ms",
            "--duration",
            "60s",
        ],
    );
    let tmux = Tmux::start(
        100,
        30,
        &format!(
            "{} top --store {} --refresh 200ms; echo EXITED $?; sleep 60",
            quote(memtools_user()),
            quote(&store.path())
        ),
    );
    let screen = tmux.wait_for("the leak in the table", Duration::from_secs(60), |s| {
        line_of(s, "leak-sim").is_some_and(|l| l.contains(" leak "))
    });
    // The header: the session being recorded, its backend and interval, the counts.
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].starts_with("session 1 · recording"), "{screen}");
    assert!(lines[0].contains("procfs every 100 ms"), "{screen}");
    assert!(
        lines[1].starts_with("rss · 1 process, 1 running"),
        "{screen}"
    );
    assert!(lines[1].contains("1 leak,"), "{screen}");
    // The row: growth, slope (about 10 MiB/s), and a rising history.
    let row = line_of(&screen, "leak-sim").unwrap_or_default();
    assert!(row.contains("MiB/s") && row.contains(" +"), "{row}");
    assert!(row.trim_end().ends_with('█'), "{row}");
    // It keeps following: the sample count moves on.
    let samples = |s: &str| -> u64 {
        s.lines()
            .nth(1)
            .and_then(|l| l.split(" · ").find(|p| p.ends_with("samples")))
            .and_then(|p| p.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = samples(&screen);
    tmux.wait_for("more samples", Duration::from_secs(20), |s| {
        samples(s) > before
    });
    // Its chart, with the evidence.
    tmux.keys(&["Enter"]);
    let chart = tmux.wait_for("the chart", Duration::from_secs(20), |s| {
        s.contains("LEAK  grew") && s.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
    });
    assert!(chart.contains("leak-sim (pid"), "{chart}");
    // q restores the terminal: the view is gone and the shell goes on.
    tmux.keys(&["q"]);
    let after = tmux.wait_for("top to exit", Duration::from_secs(20), |s| {
        s.contains("EXITED")
    });
    assert!(after.contains("EXITED 0"), "{after}");
    assert!(
        !after.contains("session 1"),
        "the view is left on screen:\n{after}"
    );
}

#[test]
fn record_live_shows_the_view_then_what_the_command_wrote() {
    let store = TestStore::new();
    let script = format!(
        "echo out-before; read line; echo \"read:$line\"; {} linear --step 1MiB --every 100ms --duration 5s; echo err-after >&2",
        quote(Path::new(leak_sim()))
    );
    let tmux = Tmux::start(
        100,
        30,
        &format!(
            "{} record --live --store {} --backend procfs -- sh -c '{}'; echo EXITED $?; sleep 60",
            quote(memtools_user()),
            quote(&store.path()),
            script.replace('\'', r"'\''")
        ),
    );
    let view = tmux.wait_for("the live view", Duration::from_secs(60), |s| {
        line_of(s, "leak-sim").is_some()
    });
    // The command's output does not land on the view (the header shows its command line).
    assert!(!view.lines().any(|l| l.starts_with("out-before")), "{view}");
    assert!(view.contains("· recording"), "{view}");
    // The recording ends with the command; the view stays, showing the ended session and, once
    // the exit is analysed, detect's verdict: one ramp that ends with the process is its peak.
    let ended = tmux.wait_for("the session's end", Duration::from_secs(60), |s| {
        s.contains("ended after") && s.contains("exit 0")
    });
    tmux.wait_for("the verdict at exit", Duration::from_secs(20), |s| {
        line_of(s, "leak-sim").is_some_and(|l| l.contains(" ok "))
    });
    let detect = store.ok(&["detect"]);
    assert!(
        detect
            .lines()
            .any(|l| l.contains("leak-sim") && l.contains(" ok ")),
        "the view and detect disagree: {ended}\n{detect}"
    );
    tmux.keys(&["q"]);
    let after = tmux.wait_for("record to exit", Duration::from_secs(20), |s| {
        s.contains("EXITED")
    });
    // What the command wrote, in order, then the summary, then the command's status.
    let at = |what: &str| {
        after
            .find(what)
            .unwrap_or_else(|| panic!("no {what} in:\n{after}"))
    };
    assert!(
        at("out-before") < at("read:") && at("read:") < at("err-after"),
        "{after}"
    );
    assert!(
        after.contains("read:\n"),
        "the command read something: {after}"
    );
    assert!(
        at("err-after") < at("memtools: session 1 (procfs)"),
        "{after}"
    );
    assert!(after.contains("EXITED 0"), "{after}");
    assert!(
        !after.contains("· recording"),
        "the view is left on screen:\n{after}"
    );
}

#[test]
fn ctrl_c_in_the_live_view_stops_the_command_as_the_terminals_would() {
    let store = TestStore::new();
    let tmux = Tmux::start(
        100,
        30,
        &format!(
            "{} record --live --store {} --backend procfs -- {} linear --step 1MiB --duration 60s; echo EXITED $?; sleep 60",
            quote(memtools_user()),
            quote(&store.path()),
            quote(Path::new(leak_sim()))
        ),
    );
    tmux.wait_for("the live view", Duration::from_secs(60), |s| {
        line_of(s, "leak-sim").is_some()
    });
    tmux.keys(&["C-c"]);
    // The command got SIGINT (128 + 2), the session ended, and the view closed by itself.
    let after = tmux.wait_for("record to exit", Duration::from_secs(30), |s| {
        s.contains("EXITED")
    });
    assert!(after.contains("EXITED 130"), "{after}");
    assert!(after.contains("memtools: session 1 (procfs)"), "{after}");
    let sessions = store.sessions();
    assert_eq!(sessions[0]["exit_signal"], 2, "{sessions:?}");
}

#[test]
fn top_records_every_process_into_a_temporary_store_it_removes() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let tmux = Tmux::start(
        120,
        30,
        &format!(
            "TMPDIR={} {} top --backend procfs --refresh 200ms; echo EXITED $?; ls -A {}; echo LISTED; sleep 60",
            quote(tmp.path()),
            quote(memtools_user()),
            quote(tmp.path())
        ),
    );
    let screen = tmux.wait_for("every process", Duration::from_secs(60), |s| {
        s.lines().nth(2).is_some_and(|l| l.starts_with("--all"))
            && s.lines().nth(1).is_some_and(|l| l.contains(" running"))
    });
    // The store is a temporary one, in TMPDIR.
    assert!(
        screen.contains(&tmp.path().display().to_string()),
        "{screen}"
    );
    // This very view is among the processes it shows.
    tmux.keys(&["/", "memtools-u", "Enter"]);
    tmux.wait_for("top itself", Duration::from_secs(20), |s| {
        line_of(s, "memtools-user").is_some()
    });
    // Ctrl-C leaves as q does; the recording stops and the temporary store is removed.
    tmux.keys(&["C-c"]);
    let after = tmux.wait_for("top to exit", Duration::from_secs(30), |s| {
        s.contains("LISTED")
    });
    assert!(after.contains("EXITED 0\nLISTED"), "{after}");
}

#[test]
fn without_a_terminal_the_live_view_says_so_and_nothing_is_recorded() {
    let store = TestStore::new();
    let path = store.path().display().to_string();
    let runs: [&[&str]; 3] = [
        &["top", "--backend", "procfs"],
        &["top", "--store", &path],
        &["record", "--live", "--backend", "procfs", "--", "true"],
    ];
    for args in runs {
        // setsid: a new session, with no controlling terminal to draw on.
        let out = Command::new("setsid")
            .arg("-w")
            .arg(memtools_user())
            .args(args)
            .env("MEMTOOLS_STORE", store.path())
            .stdin(Stdio::null())
            .output()
            .expect("setsid (util-linux)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("the live view needs a terminal"),
            "{args:?}: {err}"
        );
    }
    assert!(store.sessions().is_empty(), "{:?}", store.sessions());
}

#[test]
fn q_leaves_the_live_view_and_the_recording_goes_on_with_the_output() {
    let store = TestStore::new();
    let script = format!(
        "echo out-before; {} linear --step 1MiB --every 100ms --duration 8s; echo out-after",
        quote(Path::new(leak_sim()))
    );
    let tmux = Tmux::start(
        100,
        30,
        &format!(
            "{} record --live --store {} --backend procfs -- sh -c '{}'; echo EXITED $?; sleep 60",
            quote(memtools_user()),
            quote(&store.path()),
            script.replace('\'', r"'\''")
        ),
    );
    tmux.wait_for("the live view", Duration::from_secs(60), |s| {
        line_of(s, "leak-sim").is_some()
    });
    tmux.keys(&["q"]);
    // The view is gone while the command still runs: its output so far, and the status line.
    let during = tmux.wait_for("the status line", Duration::from_secs(20), |s| {
        s.contains("memtools: recording session 1")
    });
    assert!(during.contains("out-before"), "{during}");
    assert!(
        !during.contains("EXITED"),
        "the command ended too early: {during}"
    );
    // What it writes later shows as it comes, then the summary and its status.
    let after = tmux.wait_for("record to exit", Duration::from_secs(60), |s| {
        s.contains("EXITED")
    });
    assert!(after.contains("out-after"), "{after}");
    assert!(after.contains("memtools: session 1 (procfs)"), "{after}");
    assert!(after.contains("EXITED 0"), "{after}");
}

/// Whether process `pid` is gone (or only a zombie waiting for init to reap it).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Waits up to 20 s for the pid written in `file` to be gone.
fn wait_gone(file: &Path, what: &str) {
    let start = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no pid in {file:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    while !gone(pid) {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{what} (pid {pid}) still runs 20 s after its terminal vanished");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The terminal vanishing under the view (its tmux killed outright, as a closed window or a
/// dropped ssh connection would) ends `top` and `record --live`, and the recording stops its
/// command: nothing polls a dead terminal forever.
#[test]
fn a_terminal_that_vanishes_ends_the_view_and_the_recording() {
    let store = TestStore::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let top_pid = dir.path().join("top.pid");
    let live_pid = dir.path().join("live.pid");
    let cmd_pid = dir.path().join("cmd.pid");
    // Something to show: a short recording first.
    store.ok(&["record", "--backend", "procfs", "--", "true"]);
    let top = Tmux::start(
        100,
        30,
        &format!(
            "echo $$ > {}; exec {} top --store {}",
            quote(&top_pid),
            quote(memtools_user()),
            quote(&store.path())
        ),
    );
    let live = Tmux::start(
        100,
        30,
        &format!(
            "echo $$ > {}; exec {} record --live --backend procfs --store {} -- sh -c 'echo $$ > {}; exec sleep 600'",
            quote(&live_pid),
            quote(memtools_user()),
            quote(&store.path()),
            cmd_pid.display()
        ),
    );
    top.wait_for("the view", Duration::from_secs(60), |s| s.contains("true"));
    live.wait_for("the live view", Duration::from_secs(60), |s| {
        s.contains("sleep")
    });
    for tmux in [&top, &live] {
        let out = tmux
            .cmd()
            .args(["display-message", "-p", "#{pid}"])
            .output()
            .expect("tmux display-message");
        let server: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the tmux server's pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("killing the tmux server");
    }
    wait_gone(&top_pid, "top");
    wait_gone(&live_pid, "record --live");
    wait_gone(&cmd_pid, "the recorded command");
    let sessions = store.sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    // Newest first: the live session was finished, its command ended by the hangup.
    assert_eq!(sessions[0]["state"], "finished", "{sessions:?}");
    assert_eq!(sessions[0]["exit_signal"], 1, "{sessions:?}");
}

/// Ctrl-Z puts `top` in the background like any program (the shell says it stopped and gets
/// the terminal back, not the view's raw mode); `fg` brings the view back, whole.
#[test]
fn ctrl_z_suspends_top_and_fg_brings_it_back() {
    let store = TestStore::new();
    store.ok(&["record", "--backend", "procfs", "--", "true"]);
    let tmux = Tmux::start(100, 30, "PS1='$ ' bash --norc --noprofile -i");
    tmux.keys(&[
        &format!(
            "{} top --store {}",
            quote(memtools_user()),
            quote(&store.path())
        ),
        "Enter",
    ]);
    tmux.wait_for("the view", Duration::from_secs(60), |s| {
        s.starts_with("session 1 ")
    });
    tmux.keys(&["C-z"]);
    let shell = tmux.wait_for("the shell", Duration::from_secs(20), |s| {
        s.contains("Stopped")
    });
    assert!(!shell.starts_with("session 1 "), "{shell}");
    // The terminal is the shell's again: what is typed is echoed.
    tmux.keys(&["echo typed-$((1+1))", "Enter"]);
    tmux.wait_for("the shell's echo", Duration::from_secs(20), |s| {
        s.contains("typed-2")
    });
    tmux.keys(&["fg", "Enter"]);
    tmux.wait_for("the view again", Duration::from_secs(20), |s| {
        s.starts_with("session 1 ") && s.contains("true")
    });
    tmux.keys(&["q"]);
    tmux.keys(&["echo EXITED $?", "Enter"]);
    tmux.wait_for("top to exit", Duration::from_secs(20), |s| {
        s.contains("EXITED 0")
    });
}
