//! The recorded command: started as our child, its exit status kept for our own.

use std::ffi::OsString;

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
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts the command in `tree` (its cgroup, when it has one; SIGKILL if the recorder
    /// dies). The tree made the recorder a child subreaper, so descendants orphaned by a
    /// parent's exit are re-parented to it and stay in the followed tree.
    pub fn spawn(
        command: &Command,
        env: &[(&str, &std::path::Path)],
        tree: &Tree,
    ) -> Result<Child, RecordError> {
        let program = command.argv.first().ok_or_else(|| RecordError::Spawn {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        })?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(&command.argv[1..]).envs(env.iter().copied());
        tree.configure(&mut cmd);
        let child = cmd.spawn().map_err(|source| RecordError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
        // The std handle is dropped without waiting: `reap` collects the status, together
        // with any orphans that were re-parented to us.
        Ok(Child {
            pid: Pid::from_raw(child.id() as i32),
            status: None,
        })
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
