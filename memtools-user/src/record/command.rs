//! The recorded command: started as our child, its exit status kept for our own.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::RecordError;
use super::tree::Tree;
use memtools::model::ExitStatus;

/// A command line to run and record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<OsString>,
}

impl Command {
    /// The command as a shell would show it, quoted where needed.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The running command.
pub(crate) struct Child {
    pid: Pid,
    /// A pidfd of the command (Linux 5.3+): readable when it exits, so the recorder can wait
    /// for that without waking up to look.
    pidfd: Option<std::os::fd::OwnedFd>,
    /// The program, to name it when it cannot be started.
    program: String,
    status: Option<ExitStatus>,
    /// Holds the command before its exec until the recorder is ready (see [`Child::spawn`]).
    gate: Option<Gate>,
    spawner: Option<Spawner>,
}

/// How often a command without a pidfd is looked at for its exit.
const LOOK_EVERY: Duration = Duration::from_millis(20);
/// The longest a signal may wait to be seen.
const SIGNAL_AT_LATEST: Duration = Duration::from_millis(250);

/// A command forked but waiting, before its exec, for the recorder to follow its pid.
struct Gate {
    /// Writing a byte lets the command go; closing it unwritten cancels it.
    open: std::fs::File,
    /// What `std::process::Command::spawn` returned, once the command has exec'ed (or
    /// failed to).
    spawned: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

/// The thread that forked the command, kept until the command is done with: the command's
/// parent-death signal (SIGKILL, see [`Tree::configure`]) fires when the *thread* that
/// forked it ends, not the recorder.
struct Spawner {
    /// Dropping it lets the thread end.
    stay: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Spawner {
    /// Lets the thread end (and with it, the command's parent-death signal fires if it
    /// still runs).
    fn end(self) {
        drop(self.stay);
        let _ = self.thread.join();
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    Ok((read.into(), write.into()))
}

impl Child {
    /// Forks the command in `tree` (its cgroup, when it has one; SIGKILL if the recorder
    /// dies), held before its exec until [`Child::release`]: the recorder first follows its
    /// pid, so nothing the command does, however quick (a shell's thousand one-millisecond
    /// children), happens before recording starts. The tree made the recorder a child
    /// subreaper, so descendants orphaned by a parent's exit are re-parented to it and stay
    /// in the followed tree.
    pub fn spawn(
        command: &Command,
        env: &[(&str, &std::path::Path)],
        tree: &Tree,
    ) -> Result<Child, RecordError> {
        let program = command.argv.first().ok_or_else(|| RecordError::Spawn {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        })?;
        let failed = |source: std::io::Error| RecordError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        };
        let (pid_read, pid_write) = pipe().map_err(failed)?;
        let (gate_read, gate_write) = pipe().map_err(failed)?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(&command.argv[1..]).envs(env.iter().copied());
        // First the tree (a command that cannot join its cgroup fails here, before it says
        // its pid), then the hold.
        tree.configure(&mut cmd);
        let (pid_fd, gate_fd) = (pid_write.as_raw_fd(), gate_read.as_raw_fd());
        let own_ends = [pid_read.as_raw_fd(), gate_write.as_raw_fd()];
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (close, getpid, write, read) on descriptors it was given.
        unsafe {
            cmd.pre_exec(move || {
                // The child's copies of the recorder's ends: with the gate's write end open
                // here, the recorder closing its own would never reach the read below.
                for fd in own_ends {
                    libc::close(fd);
                }
                let pid = libc::getpid().to_ne_bytes();
                libc::write(pid_fd, pid.as_ptr().cast(), pid.len());
                let mut go = 0u8;
                loop {
                    match libc::read(gate_fd, (&raw mut go).cast(), 1) {
                        1 => return Ok(()),
                        -1 if *libc::__errno_location() == libc::EINTR => continue,
                        _ => return Err(std::io::Error::from_raw_os_error(libc::ECANCELED)),
                    }
                }
            });
        }
        let (spawned_tx, spawned) = std::sync::mpsc::channel();
        let (stay, stay_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("spawn".into())
            .spawn(move || {
                // The std handle is dropped without waiting: `reap` collects the status,
                // together with any orphans that were re-parented to us.
                let child = cmd.spawn().map(drop);
                // Whatever happened, the pid pipe closes: a fork that failed reads as EOF.
                drop(pid_write);
                drop(gate_read);
                let _ = spawned_tx.send(child);
                // Until the Child is dropped (an error: the sender is gone).
                let _ = stay_rx.recv();
            })
            .map_err(failed)?;
        let spawner = Spawner { stay, thread };
        let mut pid = [0u8; 4];
        if let Err(e) = (&pid_read).read_exact(&mut pid) {
            drop(gate_write);
            let error = match spawned.recv() {
                Ok(Err(spawn_error)) => spawn_error,
                _ => e,
            };
            spawner.end();
            return Err(failed(error));
        }
        Ok(Child {
            pid: Pid::from_raw(i32::from_ne_bytes(pid)),
            pidfd: None,
            program: program.to_string_lossy().into_owned(),
            status: None,
            gate: Some(Gate {
                open: gate_write,
                spawned,
            }),
            spawner: Some(spawner),
        })
    }

    /// Lets a held command exec; fails when it cannot (not found, not executable).
    pub fn release(&mut self) -> Result<(), RecordError> {
        let Some(Gate { mut open, spawned }) = self.gate.take() else {
            return Ok(());
        };
        // A failed write (the child died meanwhile) shows as the spawn's own error below.
        let _ = open.write_all(b"g");
        drop(open);
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid.as_raw(), 0) };
        if fd >= 0 {
            // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
            self.pidfd = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
        }
        let spawned = spawned.recv().unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the thread starting the command ended",
            ))
        });
        spawned.map_err(|source| RecordError::Spawn {
            program: self.program.clone(),
            source,
        })
    }

    /// Ends a held command without running it (the recording could not start).
    fn cancel(&mut self) {
        if let Some(Gate { open, spawned }) = self.gate.take() {
            drop(open);
            let _ = spawned.recv();
        }
    }

    /// The command's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// How it ended, once it has.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Collects every exited child without blocking: the command and any adopted orphans.
    pub fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.pid => {
                    self.status = Some(ExitStatus::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.pid => {
                    self.status = Some(ExitStatus::Signal(sig as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    /// Waits up to `longest` for the command to exit or a signal to arrive; without a command,
    /// for a signal. It wakes at once when the command exits (its pidfd) or a signal
    /// interrupts the wait, and otherwise not before it must: each wake-up of an idle
    /// recorder costs the machine a context switch. A command without a pidfd (an old kernel)
    /// is looked at every [`LOOK_EVERY`]; a signal that lands just before the wait begins is
    /// seen within [`SIGNAL_AT_LATEST`].
    pub fn wait(child: Option<&Child>, longest: Duration) {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut longest = longest.min(SIGNAL_AT_LATEST);
        if let Some(c) = child {
            match &c.pidfd {
                Some(fd) => fds[0].fd = fd.as_raw_fd(),
                None => longest = longest.min(LOOK_EVERY),
            }
        }
        let ms = longest.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one pollfd, live for the call (a negative fd is ignored by poll). A signal
        // interrupts it (EINTR), which is what we want: the caller looks at signals next.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Never leave a held command waiting for a recorder that is gone.
        self.cancel();
        if let Some(spawner) = self.spawner.take() {
            spawner.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let c = Command {
            argv: vec![
                "pytest".into(),
                "-k".into(),
                "a and b".into(),
                "it's".into(),
            ],
        };
        assert_eq!(c.display(), r"pytest -k 'a and b' 'it'\''s'");
    }
}
