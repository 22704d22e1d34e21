//! The drawing thread's loop: take the newest snapshot, draw when something changed, turn keys
//! into actions. It never reads the store or analyses: that is [`crate::worker`]'s job.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};

use crate::snapshot::Snapshot;
use crate::state::{Action, View};
use crate::theme::Theme;
use crate::worker::{Settings, Worker};
use crate::{TuiError, draw, terminal};

/// How long the loop waits for a key before looking for new data.
const TICK: Duration = Duration::from_millis(100);

/// How the program around the view takes part.
#[derive(Default)]
pub struct Controls {
    /// Set it to close the view (the recording it shows was stopped by a signal).
    pub close: Arc<AtomicBool>,
    /// What Ctrl-C does while the session is being recorded (stop the recording the way the
    /// terminal's Ctrl-C would); without it, or once the session has ended, Ctrl-C quits.
    pub on_interrupt: Option<Box<dyn FnMut() + Send>>,
    /// Catch SIGINT, SIGTERM and SIGHUP and quit on them (a view on its own); leave them to the
    /// recorder when it runs in the same program.
    pub catch_signals: bool,
}

/// Shows the session `settings` select in the store at `path` until q (or Ctrl-C, or
/// `controls.close`). The terminal is restored however it ends.
pub fn run(path: &Path, settings: Settings, mut controls: Controls) -> Result<(), TuiError> {
    terminal::available().map_err(TuiError::NoTerminal)?;
    let caught = Arc::new(AtomicBool::new(false));
    let mut hooks = Vec::new();
    if controls.catch_signals {
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let id = signal_hook::flag::register(sig, Arc::clone(&caught))
                .map_err(TuiError::Terminal)?;
            hooks.push(id);
        }
    }
    let result = (|| {
        let worker = Worker::start(path, settings).map_err(TuiError::Terminal)?;
        let mut screen = terminal::open()?;
        let mut view = View::new(
            Arc::new(Snapshot::empty(path.to_path_buf())),
            Theme::from_env(),
        );
        let mut dirty = true;
        loop {
            if controls.close.load(Ordering::SeqCst)
                || caught.load(Ordering::SeqCst)
                || screen.hung_up()
            {
                return Ok(());
            }
            if let Some(s) = worker.snapshot() {
                view.update(s);
                dirty = true;
            }
            if !worker.alive() && view.notice.is_none() {
                view.notice = Some(
                    "reading the store stopped (an internal error, printed when you quit); what is shown is no longer updated"
                        .into(),
                );
                dirty = true;
            }
            if dirty {
                screen
                    .terminal
                    .draw(|f| draw::frame(f, &mut view))
                    .map_err(TuiError::Terminal)?;
                dirty = false;
            }
            if !event::poll(TICK).map_err(TuiError::Terminal)? {
                continue;
            }
            match event::read().map_err(TuiError::Terminal)? {
                Event::Key(key) => {
                    dirty = true;
                    match view.key(key) {
                        Action::None => {}
                        Action::Quit => return Ok(()),
                        Action::Request(r) => worker.request(r),
                        // A view on its own stops like any program; the view of a recording
                        // does not, since stopping it would stop the recorder, not its command.
                        Action::Suspend if controls.catch_signals => {
                            terminal::suspend(&mut screen)?;
                        }
                        Action::Suspend => {
                            view.notice = Some(
                                "Ctrl-Z: a recording's view is not suspended (the recorder would stop, not its command); q leaves the view"
                                    .into(),
                            );
                        }
                        Action::Interrupt => {
                            let recording =
                                view.snapshot.session.is_some() && view.snapshot.recording();
                            match controls.on_interrupt.as_mut() {
                                Some(interrupt) if recording => {
                                    interrupt();
                                    view.notice = Some(
                                        "Ctrl-C: the recording stops once the command has exited; q leaves the view"
                                            .into(),
                                    );
                                }
                                _ => return Ok(()),
                            }
                        }
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    })();
    for id in hooks {
        signal_hook::low_level::unregister(id);
    }
    result
}
