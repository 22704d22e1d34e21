//! The terminal the view draws on: the controlling terminal (`/dev/tty`), so the view works
//! whatever the program's own standard streams are, switched to raw mode and the alternate
//! screen, and put back as it was however the view ends: q, Ctrl-C, a signal, an error or a
//! panic (a panic hook restores it before the message is printed).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

use crate::TuiError;

/// Whether the terminal is in the view's modes, so restoring happens once.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal while the view is up; dropping it restores the terminal.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<BufWriter<File>>>,
}

/// Takes over the controlling terminal.
pub fn open() -> Result<Screen, TuiError> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(TuiError::NoTerminal)?;
    install_panic_hook();
    enable_raw_mode().map_err(TuiError::Terminal)?;
    ACTIVE.store(true, Ordering::SeqCst);
    let mut out = BufWriter::new(tty);
    if let Err(e) = execute!(out, EnterAlternateScreen, Hide) {
        restore();
        return Err(TuiError::Terminal(e));
    }
    match Terminal::new(CrosstermBackend::new(out)) {
        Ok(terminal) => Ok(Screen { terminal }),
        Err(e) => {
            restore();
            Err(TuiError::Terminal(e))
        }
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode; does nothing if the view
/// is not up. Safe from a panic hook.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        if let Ok(mut tty) = OpenOptions::new().write(true).open("/dev/tty") {
            let _ = execute!(tty, LeaveAlternateScreen, Show);
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Whether the terminal is usable as the view's (a controlling terminal exists).
pub fn available() -> io::Result<()> {
    OpenOptions::new().write(true).open("/dev/tty").map(drop)
}
