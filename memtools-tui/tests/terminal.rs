//! The terminal is given back however the view ends, a panic included: this test runs itself
//! again inside a real terminal (tmux, installed by `cargo xtask setup`), where the second run
//! takes the terminal over, draws, and panics at a key; then the terminal must be out of raw
//! mode and back on its normal screen, with the panic's message on it.

use std::process::Command;
use std::time::{Duration, Instant};

use ratatui::crossterm::event;
use ratatui::widgets::Paragraph;

const CHILD: &str = "MEMTOOLS_TUI_TEST_PANIC_IN_VIEW";

fn tmux(socket: &str) -> Command {
    let mut c = Command::new("tmux");
    c.args(["-L", socket]).env("LANG", "C.UTF-8");
    c
}

fn screen(socket: &str) -> String {
    let out = tmux(socket)
        .args(["capture-pane", "-p", "-t", "main"])
        .output()
        .expect("tmux capture-pane");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(socket: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let s = screen(socket);
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited for {what}:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Server(String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = tmux(&self.0).arg("kill-server").status();
    }
}

#[test]
fn a_panic_in_the_view_gives_the_terminal_back() {
    if std::env::var_os(CHILD).is_some() {
        // The second run, inside tmux: take the terminal, draw, panic at the first key.
        let mut screen = memtools_tui::terminal::open().expect("the terminal");
        screen
            .terminal
            .draw(|f| f.render_widget(Paragraph::new("VIEW-UP"), f.area()))
            .expect("a frame");
        let _ = event::read();
        panic!("boom inside the view");
    }
    let exe = std::env::current_exe().expect("this test binary");
    let socket = format!("memtools-tui-test-{}", std::process::id());
    let _server = Server(socket.clone());
    let command = format!(
        "{CHILD}=1 RUST_BACKTRACE=0 '{}' --exact a_panic_in_the_view_gives_the_terminal_back --nocapture --test-threads=1; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-*icanon'; echo DONE",
        exe.display()
    );
    let status = tmux(&socket)
        .args(["-f", "/dev/null", "new-session", "-d", "-s", "main"])
        .args(["-x", "100", "-y", "30", &command])
        .status()
        .expect("tmux not found: `cargo xtask setup` installs it (Debian package tmux)");
    assert!(status.success());
    // Keep the pane once the command is done, to read it.
    let _ = tmux(&socket)
        .args(["set-option", "-t", "main", "remain-on-exit", "on"])
        .status();
    wait_for(&socket, "the view", |s| s.contains("VIEW-UP"));
    let _ = tmux(&socket)
        .args(["send-keys", "-t", "main", "p"])
        .status();
    let after = wait_for(&socket, "the shell after the panic", |s| s.contains("DONE"));
    assert!(after.contains("boom inside the view"), "{after}");
    // Back on the normal screen (the view's screen is gone) and out of raw mode.
    assert!(!after.contains("VIEW-UP"), "{after}");
    assert!(after.lines().any(|l| l == "icanon"), "still raw:\n{after}");
}
