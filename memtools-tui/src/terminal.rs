//! The terminal the view draws on: the controlling terminal (`/dev/tty`), so the view works
//! whatever the program's own standard streams are, switched to raw mode and the alternate
//! screen, and put back as it was however the view ends: q, Ctrl-C, a signal, an error or a
//! panic (a panic hook restores it before the message is printed).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::fd::AsFd;
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
    /// The terminal, to see it hang up.
    tty: File,
}

impl Screen {
    /// Whether the terminal hung up (its window closed, its ssh connection dropped, its tmux
    /// killed): the view then has nobody to show anything to and must end, not poll a dead
    /// terminal forever.
    pub fn hung_up(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.tty.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => false,
            Ok(_) => fds[0].revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
            }),
            Err(nix::errno::Errno::EINTR) => false,
            Err(_) => true,
        }
    }
}

/// Takes over the controlling terminal.
pub fn open() -> Result<Screen, TuiError> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(TuiError::NoTerminal)?;
    let watch = tty.try_clone().map_err(TuiError::NoTerminal)?;
    install_panic_hook();
    enable_raw_mode().map_err(TuiError::Terminal)?;
    ACTIVE.store(true, Ordering::SeqCst);
    let mut out = BufWriter::new(tty);
    if let Err(e) = execute!(out, EnterAlternateScreen, Hide) {
        restore();
        return Err(TuiError::Terminal(e));
    }
    match Terminal::new(CrosstermBackend::new(out)) {
        Ok(terminal) => Ok(Screen {
            terminal,
            tty: watch,
        }),
        Err(e) => {
            restore();
            Err(TuiError::Terminal(e))
        }
    }
}

/// Hands the terminal back to the shell and stops this process (SIGTSTP, as the terminal's
/// Ctrl-Z would, which raw mode turns into a key); when the shell resumes it (`fg`), takes the
/// terminal over again and clears it so the next frame is drawn whole.
pub fn suspend(screen: &mut Screen) -> Result<(), TuiError> {
    restore();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTSTP)
        .map_err(|e| TuiError::Terminal(e.into()))?;
    enable_raw_mode().map_err(TuiError::Terminal)?;
    ACTIVE.store(true, Ordering::SeqCst);
    execute!(screen.terminal.backend_mut(), EnterAlternateScreen, Hide)
        .map_err(TuiError::Terminal)?;
    screen.terminal.clear().map_err(TuiError::Terminal)
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
