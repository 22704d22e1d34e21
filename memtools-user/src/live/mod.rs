//! The live view (memtools-tui) beside the recorder, for `top` and `record --live`.
//!
//! The recorder keeps the main thread: its loop, its signals and the command's lifetime are its
//! own. The view starts on a thread of its own at the recording's first progress report, once
//! the recorder catches the stop signals and the session exists, and follows that session in
//! the store exactly as `top --store` would. Until the view closes, the terminal is the view's:
//! see [`streams`].

pub mod streams;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use memtools::store::SessionSelector;
use memtools_tui::{Controls, Settings, TuiError};
use nix::sys::signal::{Signal, killpg};

use crate::record::Progress;
use streams::Capture;

/// The view on its own thread.
pub struct Beside {
    path: PathBuf,
    settings: Option<Settings>,
    interrupt: Option<Box<dyn FnMut() + Send>>,
    close: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), TuiError>>>,
}

/// Sets a flag when dropped: the view's thread says it ended, even by a panic.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Beside {
    /// A view of the store at `path`, not started yet. `interrupt` is what Ctrl-C does while
    /// the session is recorded (`None`: it closes the view).
    pub fn new(
        path: &Path,
        settings: Settings,
        interrupt: Option<Box<dyn FnMut() + Send>>,
    ) -> Beside {
        Beside {
            path: path.to_path_buf(),
            settings: Some(settings),
            interrupt,
            close: Arc::new(AtomicBool::new(false)),
            ended: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// Starts the view on `session`; later calls do nothing.
    pub fn start(&mut self, session: i64) {
        let Some(mut settings) = self.settings.take() else {
            return;
        };
        settings.selector = SessionSelector::Id(session);
        let controls = Controls {
            close: Arc::clone(&self.close),
            on_interrupt: self.interrupt.take(),
            catch_signals: false,
        };
        let path = self.path.clone();
        let ended = SetOnDrop(Arc::clone(&self.ended));
        let spawned = std::thread::Builder::new()
            .name("memtools-tui".into())
            .spawn(move || {
                let _ended = ended;
                memtools_tui::run(&path, settings, controls)
            });
        match spawned {
            Ok(t) => self.thread = Some(t),
            Err(_) => self.ended.store(true, Ordering::SeqCst),
        }
    }

    pub fn started(&self) -> bool {
        self.settings.is_none()
    }

    /// Whether the view has closed (q, or it failed).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Waits until the view closes (`close`: closes it first); what went wrong in it, if
    /// anything.
    pub fn join(&mut self, close: bool) -> anyhow::Result<()> {
        if close {
            self.close.store(true, Ordering::SeqCst);
        }
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(_)) => anyhow::bail!("the live view failed (see the message above)"),
        }
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        let _ = self.join(true);
    }
}

/// What the terminal's Ctrl-C does, which the view's raw mode turned off: SIGINT to the
/// terminal's foreground process group (the recorded command and the recorder).
pub fn terminal_interrupt() {
    let group = std::fs::File::open("/dev/tty")
        .ok()
        .and_then(|tty| nix::unistd::tcgetpgrp(&tty).ok())
        .unwrap_or_else(nix::unistd::getpgrp);
    let _ = killpg(group, Signal::SIGINT);
}

/// A recording shown live: the view, the streams kept off the terminal meanwhile, and the
/// recorder's notices held back until the view closes.
pub struct LiveRecording {
    pub view: Beside,
    /// Ctrl-C was pressed in the view: the recording was stopped, not finished.
    interrupted: Arc<AtomicBool>,
    capture: Capture,
    notices: Vec<String>,
    /// The status line is shown (the view was closed while recording).
    status: bool,
}

impl LiveRecording {
    /// `record --live`: Ctrl-C in the view stops the recording as the terminal's Ctrl-C
    /// would. Takes the terminal's streams away from the command about to be started
    /// (`command`) and from the recorder; the view starts at the first progress report.
    pub fn record(path: &Path, settings: Settings, command: bool) -> anyhow::Result<Self> {
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&interrupted);
        let interrupt = move || {
            flag.store(true, Ordering::SeqCst);
            terminal_interrupt();
        };
        let view = Beside::new(path, settings, Some(Box::new(interrupt)));
        Self::prepare(view, interrupted, command)
    }

    /// `top`: Ctrl-C closes the view, as q does.
    pub fn top(path: &Path, settings: Settings) -> anyhow::Result<Self> {
        let view = Beside::new(path, settings, None);
        Self::prepare(view, Arc::new(AtomicBool::new(false)), false)
    }

    fn prepare(
        view: Beside,
        interrupted: Arc<AtomicBool>,
        command: bool,
    ) -> anyhow::Result<LiveRecording> {
        memtools_tui::terminal::available().map_err(TuiError::NoTerminal)?;
        Ok(LiveRecording {
            view,
            interrupted,
            capture: Capture::redirect(command)?,
            notices: Vec::new(),
            status: false,
        })
    }

    /// At each progress report: starts the view the first time; once the user has closed it,
    /// shows the command's output as it comes. Returns whether the status line should show.
    pub fn progress(&mut self, p: &Progress) -> bool {
        if !self.view.started() {
            // The command has its streams now; the recorder needs its stdin back to tell a
            // terminal's Ctrl-C (which the view sends) from a signal meant for it alone.
            self.capture.restore_stdin();
            self.view.start(p.session_id);
            return false;
        }
        if !self.view.ended() {
            return false;
        }
        if !self.status {
            self.status = true;
            self.capture.restore();
            self.show_notices();
        }
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
        let _ = self.capture.show_new();
        true
    }

    /// Holds a notice back while the view is up.
    pub fn notice(&mut self, line: &str) {
        if self.status {
            eprintln!("memtools: {line}");
        } else {
            self.notices.push(line.to_string());
        }
    }

    fn show_notices(&mut self) {
        for line in self.notices.drain(..) {
            eprintln!("memtools: {line}");
        }
    }

    /// After the recording: lets the user look at the finished session until they leave the
    /// view, or closes it at once when the recording was stopped (`stopped`: by a signal, or by
    /// Ctrl-C in the view); then gives the terminal back and shows what the command and the
    /// recorder wrote meanwhile.
    pub fn finish(mut self, stopped: bool) -> anyhow::Result<()> {
        let close = stopped || self.interrupted.load(Ordering::SeqCst);
        let viewed = self.view.join(close);
        self.capture.restore();
        self.show_notices();
        self.capture.show_new()?;
        let _ = std::io::stdout().flush();
        viewed
    }
}
