//! Every process a benchmark starts is gone when it ends. Tracers start helpers of their own
//! (heaptrack's script runs `heaptrack_interpret | zstd` beside the program it preloads), and
//! a signal to the tracer alone left those, and the traced `sleep`, running for an hour. So a
//! tracer runs in a process group of its own and is stopped as a group, and the benchmark
//! adopts what its children orphan (a child subreaper) so that it can reap them, and sweeps
//! up anything still there at the end of each run.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Makes this process the parent of its descendants' orphans, so that they can be killed
/// and reaped (instead of going to init and out of sight).
pub(crate) fn adopt_orphans() -> Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer flag and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot become a child subreaper");
    }
    Ok(())
}

/// A command running in its own process group, stopped whole when dropped.
pub(crate) struct Group {
    pub child: Child,
    stopped: bool,
}

impl Group {
    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> Result<Group> {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Group {
            child,
            stopped: false,
        })
    }

    /// SIGINT to the whole group (a tracer writes out and detaches), up to `grace` for the
    /// leader to go, then SIGKILL to whatever of the group is left, every member reaped.
    pub fn stop(&mut self, grace: Duration) {
        if std::mem::replace(&mut self.stopped, true) {
            // Once: the group's id may be another's after that.
            return;
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the group this child leads.
        unsafe { libc::kill(-pgid, libc::SIGINT) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_group(pgid);
        let _ = self.child.wait();
        reap_group(pgid);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(20));
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill(2) on a group we started; ESRCH when it is empty is fine.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Waits for every member of the group that is (or became, as an orphan) our child.
fn reap_group(pgid: libc::pid_t) {
    loop {
        // Members forked since the last kill are killed too.
        kill_group(pgid);
        let mut status = 0;
        // SAFETY: waitpid on our own children of that group; status is a live local.
        if unsafe { libc::waitpid(-pgid, &mut status, 0) } <= 0 {
            // ECHILD: none left (EINTR: try again).
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return;
            }
        }
    }
}

/// Kills and reaps every child of this process still running (a run's leftovers, adopted
/// orphans included); says which, since a benchmark that leaves one behind has a bug.
pub(crate) fn sweep() {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // State and parent are the first two fields after the name, which ends at the last ')'.
        let mut after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let (state, parent) = (after.next(), after.next());
        if parent != Some(me.as_str()) {
            continue;
        }
        let mut status = 0;
        if state == Some("Z") {
            // Exited, only not waited for.
            // SAFETY: waitpid(2) on our own child; status is a live local.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            continue;
        }
        let comm = stat
            .split_once('(')
            .map_or("?", |(_, r)| r.rsplit_once(')').map_or("?", |(c, _)| c));
        eprintln!("bench: killing pid {pid} ({comm}), left behind by a run");
        // SAFETY: kill(2) and waitpid(2) on our own child; status is a live local.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0);
        }
    }
}
