//! Stopping the recorded command's whole tree: a request (Ctrl-C, SIGTERM or SIGHUP to the
//! recorder, `--duration`) sends every process of the tree the signal, SIGKILL follows after
//! the grace period (or at a second request), and processes the command leaves behind when it
//! exits get the same. The recorder records until the tree is empty, so none outlives it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::RecordError;
use super::tree::Tree;

/// How long the tree may take to exit after it was asked to stop.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the tree is in being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing asked.
    Running,
    /// Sent the signal; SIGKILL at this deadline.
    Asked(Instant),
    /// Sent SIGKILL; give up waiting at this deadline.
    Killed(Instant),
}

/// What the loop should do after [`Stopper::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep recording.
    Continue,
    /// The command exited and its tree is empty: the recording is over.
    Done,
    /// The command exited leaving these many processes, which were sent SIGTERM.
    Leftovers(usize),
    /// SIGKILL did not end these processes within the grace period (stuck in the kernel).
    GaveUp(Vec<u32>),
}

/// The stopping state of one recorded tree.
pub struct Stopper {
    state: State,
}

impl Stopper {
    pub fn new() -> Stopper {
        Stopper {
            state: State::Running,
        }
    }

    /// Whether nothing has been asked yet.
    pub fn idle(&self) -> bool {
        self.state == State::Running
    }

    /// A request to stop: the tree gets `signal` (a terminal's Ctrl-C reached the processes in
    /// our process group already: then only the others get it); asked again, SIGKILL now.
    pub fn request(&mut self, tree: &Tree, signal: Signal, from_terminal: bool) {
        match self.state {
            State::Running => {
                let skip = from_terminal.then(nix::unistd::getpgrp);
                tree.signal(signal, skip);
                self.state = State::Asked(Instant::now() + STOP_GRACE);
            }
            _ => self.kill(tree),
        }
    }

    fn kill(&mut self, tree: &Tree) {
        tree.kill();
        self.state = State::Killed(Instant::now() + STOP_GRACE);
    }

    /// Moves the stop along: ends the recording once the command exited and the tree is empty,
    /// stops what the command left behind, escalates to SIGKILL at the deadline.
    pub fn step(&mut self, tree: &Tree, command_exited: bool) -> Step {
        let now = Instant::now();
        let members = if command_exited || !self.idle() {
            tree.members()
        } else {
            Vec::new()
        };
        if command_exited && members.is_empty() {
            return Step::Done;
        }
        match self.state {
            State::Running if command_exited => {
                let n = tree.signal(Signal::SIGTERM, None);
                self.state = State::Asked(now + STOP_GRACE);
                Step::Leftovers(n.max(members.len()))
            }
            State::Running => Step::Continue,
            State::Asked(deadline) => {
                if now >= deadline {
                    self.kill(tree);
                }
                Step::Continue
            }
            State::Killed(deadline) => {
                if now >= deadline {
                    return Step::GaveUp(members);
                }
                // Again each time: a process forked since the last one is caught too.
                if !members.is_empty() {
                    tree.kill();
                }
                Step::Continue
            }
        }
    }

    /// Ends the tree at once and waits for it (up to the grace period): for a recording that
    /// failed after the command started.
    pub fn kill_and_wait(&mut self, tree: &Tree, mut reap: impl FnMut()) {
        let deadline = Instant::now() + STOP_GRACE;
        self.kill(tree);
        while Instant::now() < deadline {
            reap();
            if tree.members().is_empty() {
                return;
            }
            tree.kill();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Signals that stop a recording, caught for as long as it runs.
pub struct StopSignals {
    caught: Arc<AtomicUsize>,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignals {
    pub fn install() -> Result<StopSignals, RecordError> {
        let caught = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let id = signal_hook::flag::register_usize(sig, Arc::clone(&caught), sig as usize)
                .map_err(RecordError::Signals)?;
            ids.push(id);
        }
        Ok(StopSignals { caught, ids })
    }

    /// Takes the last caught signal, if any.
    pub fn take(&self) -> Option<i32> {
        match self.caught.swap(0, Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Whether a SIGINT most likely came from the terminal, which sent it to the command too.
pub fn sigint_from_terminal() -> bool {
    let stdin = std::io::stdin();
    match nix::unistd::tcgetpgrp(&stdin) {
        Ok(fg) => fg == nix::unistd::getpgrp(),
        Err(_) => false,
    }
}
